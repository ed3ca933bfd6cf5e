//! Unit tests of the session relays against the fake backend.
