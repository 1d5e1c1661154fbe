//! A file's manifest, read a chunk at a time: files of any size (up to
//! the manifest's 16 GiB) are never held whole in memory.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use protocol::ids::ChunkHash;
use protocol::manifest::{self, Manifest, DEFAULT_CHUNK_SIZE};

/// The manifest of the file at `path`, named `name`, typed `media_type`.
pub fn manifest_of(path: &Path, media_type: &str, name: &str) -> io::Result<Manifest> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; DEFAULT_CHUNK_SIZE as usize];
    let mut chunks = Vec::new();
    let mut size = 0u64;
    loop {
        let n = fill(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > manifest::MAX_SIZE {
            return Err(io::Error::other(
                "is larger than 16 GiB, the most one manifest describes",
            ));
        }
        chunks.push(ChunkHash::of(&buf[..n]));
        if n < buf.len() {
            break;
        }
    }
    Ok(Manifest {
        v: manifest::VERSION,
        size,
        media_type: media_type.to_owned(),
        name: Some(name.to_owned()),
        chunk_size: DEFAULT_CHUNK_SIZE,
        chunks,
    })
}

/// Reads until `buf` is full or the file ends; how many bytes were read.
fn fill(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The media type a static server gives a file by its extension.
pub fn media_type_of(path: &Path) -> String {
    mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_manifest_of_the_same_bytes_in_memory() {
        let dir = std::env::temp_dir().join(format!("peerpage-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for len in [
            0,
            1,
            DEFAULT_CHUNK_SIZE as usize,
            3 * DEFAULT_CHUNK_SIZE as usize + 5,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let path = dir.join("f.bin");
            std::fs::write(&path, &data).unwrap();
            let streamed = manifest_of(&path, "application/octet-stream", "f.bin").unwrap();
            let whole = Manifest::describe(&data, "application/octet-stream", Some("f.bin"));
            assert_eq!(streamed, whole, "{len} bytes");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
