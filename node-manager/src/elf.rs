//! Just enough ELF to tell a statically linked executable from a dynamic one: a dynamic
//! executable names its loader in a PT_INTERP program header. Without a loader in the base
//! image, only a static busybox can run there.

/// Why a file is not a usable static executable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Not an ELF file (or truncated).
    #[error("not an ELF executable")]
    NotElf,
    /// Program headers run past the end of the file.
    #[error("truncated ELF program headers")]
    Truncated,
    /// It needs a dynamic loader.
    #[error("dynamically linked (needs an ELF interpreter)")]
    Dynamic,
}

const PT_INTERP: u32 = 3;

/// Checks that `bytes` is an ELF executable without a PT_INTERP program header.
pub fn check_static(bytes: &[u8]) -> Result<(), ElfError> {
    if bytes.len() < 52 || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let is64 = match bytes[4] {
        1 => false,
        2 => true,
        _ => return Err(ElfError::NotElf),
    };
    let le = match bytes[5] {
        1 => true,
        2 => false,
        _ => return Err(ElfError::NotElf),
    };
    let rd = |off: usize, len: usize| -> Result<u64, ElfError> {
        let b = bytes.get(off..off + len).ok_or(ElfError::Truncated)?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if le { b[len - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (rd(0x20, 8)?, rd(0x36, 2)?, rd(0x38, 2)?)
    } else {
        (rd(0x1c, 4)?, rd(0x2a, 2)?, rd(0x2c, 2)?)
    };
    if phentsize < 4 {
        return Err(ElfError::NotElf);
    }
    for i in 0..phnum {
        let off = phoff
            .checked_add(i * phentsize)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(ElfError::Truncated)?;
        if rd(off, 4)? as u32 == PT_INTERP {
            return Err(ElfError::Dynamic);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ELF header with the given program header types.
    fn elf64(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for t in types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            b.extend(ph);
        }
        b
    }

    #[test]
    fn static_and_dynamic() {
        assert_eq!(check_static(&elf64(&[1, 1, 4])), Ok(()));
        assert_eq!(check_static(&elf64(&[6, 3, 1])), Err(ElfError::Dynamic));
        assert_eq!(
            check_static(b"#!/bin/sh\necho not elf\n and some padding to be long enough......"),
            Err(ElfError::NotElf)
        );
        let mut cut = elf64(&[1, 1]);
        cut.truncate(100);
        assert_eq!(check_static(&cut), Err(ElfError::Truncated));
    }

    #[test]
    fn this_test_binary_is_dynamic() {
        // Rust binaries for the gnu target link glibc dynamically.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(check_static(&me), Err(ElfError::Dynamic));
    }
}
