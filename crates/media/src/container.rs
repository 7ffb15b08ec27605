//! Recognising a container by its first bytes, never by the name or content type the client
//! sent.

use keyframe_domain::media::Container;

/// Bytes needed to recognise every accepted container.
pub const SNIFF_LEN: usize = 64;

/// The container the bytes start, if Keyframe accepts it.
///
/// ISO base media files (MP4, MOV) start with a box whose type, at offset 4, is `ftyp` (older
/// QuickTime files may start with `moov`, `mdat`, `wide` or `free` instead); the brand after
/// `ftyp` tells QuickTime (`qt  `) from the rest. Matroska and WebM start with the EBML magic
/// `1A 45 DF A3`; the doc type inside the header tells WebM from Matroska. AVI is a RIFF file
/// (`RIFF`, a 4-byte size, then the form type `AVI `); other RIFF forms (WAVE, WebP) are not
/// videos.
pub fn sniff(head: &[u8]) -> Option<Container> {
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some(if &head[8..12] == b"qt  " {
            Container::QuickTime
        } else {
            Container::Mp4
        });
    }
    if head.len() >= 8 && matches!(&head[4..8], b"moov" | b"mdat" | b"wide" | b"free") {
        return Some(Container::QuickTime);
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        let webm = head.windows(4).any(|window| window == b"webm");
        return Some(if webm { Container::WebM } else { Container::Matroska });
    }
    if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"AVI " {
        return Some(Container::Avi);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_mp4_quicktime_webm_matroska_and_avi() {
        assert_eq!(sniff(b"\0\0\0\x20ftypisom\0\0\x02\0"), Some(Container::Mp4));
        assert_eq!(sniff(b"\0\0\0\x14ftypqt  \0\0\0\0"), Some(Container::QuickTime));
        assert_eq!(sniff(b"\0\0\0\x08wide\0\0\0\0"), Some(Container::QuickTime));
        let webm = b"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x84webm";
        assert_eq!(sniff(webm), Some(Container::WebM));
        let mkv = b"\x1A\x45\xDF\xA3\xA3\x42\x86\x81\x01\x42\x82\x88matroska";
        assert_eq!(sniff(mkv), Some(Container::Matroska));
        assert_eq!(sniff(b"RIFF\x24\x10\x00\x00AVI LIST"), Some(Container::Avi));
    }

    #[test]
    fn refuses_anything_else() {
        assert_eq!(sniff(b"hello, this is a text file renamed .mp4"), None);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), None);
        assert_eq!(sniff(b"RIFF\x24\x10\x00\x00WAVEfmt "), None, "a RIFF that is not AVI");
        assert_eq!(sniff(b"RIFF\x24\x10"), None);
        assert_eq!(sniff(b"\0\0\0"), None);
        assert_eq!(sniff(b""), None);
    }
}
