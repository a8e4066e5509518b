//! The containers decoded here, told by their first bytes, and the sizes an MP4 or Matroska
//! header declares checked against the file before symphonia reads it.
//!
//! symphonia allocates what an element, an atom or a table says it holds before reading it
//! (`read_boxed_slice_exact`, `Vec::with_capacity` of a count). A few bytes claiming
//! terabytes would make that allocation fail, and a failed allocation aborts the process:
//! it is not a panic the decoder's `catch_unwind` could turn into a refusal. Every size here
//! must fit in what holds it, so no allocation exceeds the upload, itself within
//! `audio.max_upload`.

use std::io::{BufReader, Read, Seek, SeekFrom};

/// The containers decoded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Container {
    Wav,
    Flac,
    Ogg,
    Mp4,
    Matroska,
    Mp3,
}

impl Container {
    /// The container the first bytes announce, if any the server reads.
    pub(super) fn of(head: &[u8]) -> Option<Container> {
        match head {
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'A',
                b'V',
                b'E',
                ..,
            ] => Some(Container::Wav),
            [b'f', b'L', b'a', b'C', ..] => Some(Container::Flac),
            [b'O', b'g', b'g', b'S', ..] => Some(Container::Ogg),
            [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some(Container::Mp4),
            [0x1A, 0x45, 0xDF, 0xA3, ..] => Some(Container::Matroska),
            [b'I', b'D', b'3', ..] => Some(Container::Mp3),
            // An MPEG audio frame's sync word, with a layer (ADTS, raw AAC, has none).
            [0xFF, second, ..] if second & 0xE0 == 0xE0 && second & 0x06 != 0 => {
                Some(Container::Mp3)
            }
            _ => None,
        }
    }

    /// As the refusals name it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Container::Wav => "WAV",
            Container::Flac => "FLAC",
            Container::Ogg => "Ogg",
            Container::Mp4 => "MP4",
            Container::Matroska => "WebM",
            Container::Mp3 => "MP3",
        }
    }

    /// As the session's metadata names it.
    pub(super) fn format(self) -> &'static str {
        match self {
            Container::Wav => "wav",
            Container::Flac => "flac",
            Container::Ogg => "ogg",
            Container::Mp4 => "m4a",
            Container::Matroska => "webm",
            Container::Mp3 => "mp3",
        }
    }

    /// Checks the sizes the structure of `file` (`length` bytes) declares, for the
    /// containers whose reader trusts them: `Err` says which does not fit.
    pub(super) fn check_sizes<F: Read + Seek>(self, file: F, length: u64) -> Result<(), String> {
        let mut reader = Reader(BufReader::new(file));
        match self {
            Container::Mp4 => mp4::check(&mut reader, 0, length, 0),
            Container::Matroska => matroska::check(&mut reader, length),
            // The RIFF, FLAC, Ogg and MP3 readers read within what they have buffered.
            _ => Ok(()),
        }
    }
}

/// A buffered file read at positions, where a short read is a cut file.
struct Reader<F>(BufReader<F>);

impl<F: Read + Seek> Reader<F> {
    fn at(&mut self, position: u64) -> Result<(), String> {
        self.0
            .seek(SeekFrom::Start(position))
            .map(drop)
            .map_err(|error| format!("cannot read the upload: {error}"))
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut bytes = [0; N];
        self.0
            .read_exact(&mut bytes)
            .map_err(|_| "the file ends inside a header".to_owned())?;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.bytes::<1>()?[0])
    }
}

fn overruns(what: &str, claimed: u64, room: u64) -> String {
    format!("{what} claims {claimed} bytes where {room} remain")
}

/// ISO base media (MP4, M4A): atoms within their parents, and the sample tables' counts
/// within their atoms.
mod mp4 {
    use super::{Reader, overruns};
    use std::io::{Read, Seek};

    /// Deeper than any real file nests (moov, trak, mdia, minf, stbl, then a table).
    const MAX_DEPTH: usize = 12;

    /// Atoms holding only atoms, which symphonia reads into.
    const PARENTS: [&[u8; 4]; 11] = [
        b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"mvex", b"moof",
        b"traf",
    ];

    pub(super) fn check<F: Read + Seek>(
        reader: &mut Reader<F>,
        start: u64,
        end: u64,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("atoms nest deeper than any real file".to_owned());
        }
        let mut position = start;
        // Fewer than 8 bytes left cannot be an atom: padding, which readers pass over.
        while end - position >= 8 {
            reader.at(position)?;
            let short = u64::from(u32::from_be_bytes(reader.bytes()?));
            let kind: [u8; 4] = reader.bytes()?;
            let (size, header) = match short {
                0 => (end - position, 8),
                1 => (u64::from_be_bytes(reader.bytes()?), 16),
                size => (size, 8),
            };
            let name = String::from_utf8_lossy(&kind).into_owned();
            if size < header || size > end - position {
                return Err(overruns(
                    &format!("the atom `{name}`"),
                    size,
                    end - position,
                ));
            }
            let body = position + header;
            let atom_end = position + size;
            if PARENTS.contains(&&kind) {
                check(reader, body, atom_end, depth + 1)?;
            } else if &kind == b"meta" {
                // ISO's `meta` starts with a version and flags; QuickTime's does not.
                reader.at(body)?;
                let first: [u8; 4] = reader.bytes()?;
                let children = if first == [0; 4] { body + 4 } else { body };
                check(reader, children.min(atom_end), atom_end, depth + 1)?;
            } else if &kind == b"ilst" {
                // Each metadata item holds `data` atoms.
                items(reader, body, atom_end, depth + 1)?;
            } else if let Some((count_at, entry)) = table(&kind, reader, body, atom_end)? {
                reader.at(count_at)?;
                let count = u64::from(u32::from_be_bytes(reader.bytes()?));
                let room = atom_end.saturating_sub(count_at + 4);
                if count.saturating_mul(entry) > room {
                    return Err(overruns(
                        &format!("the table `{name}` of {count} entries"),
                        count.saturating_mul(entry),
                        room,
                    ));
                }
            }
            position = atom_end;
        }
        Ok(())
    }

    fn items<F: Read + Seek>(
        reader: &mut Reader<F>,
        start: u64,
        end: u64,
        depth: usize,
    ) -> Result<(), String> {
        let mut position = start;
        while end - position >= 8 {
            reader.at(position)?;
            let size = u64::from(u32::from_be_bytes(reader.bytes()?));
            if size < 8 || size > end - position {
                return Err(overruns("a metadata item", size, end - position));
            }
            check(reader, position + 8, position + size, depth + 1)?;
            position += size;
        }
        Ok(())
    }

    /// Where a sample table keeps its entry count, and the bytes of one entry.
    fn table<F: Read + Seek>(
        kind: &[u8; 4],
        reader: &mut Reader<F>,
        body: u64,
        end: u64,
    ) -> Result<Option<(u64, u64)>, String> {
        // After the version and flags: the count, then the entries.
        Ok(match kind {
            b"stco" | b"stss" => Some((body + 4, 4)),
            b"co64" | b"stts" | b"ctts" => Some((body + 4, 8)),
            b"stsc" => Some((body + 4, 12)),
            // A sample size of 0 means one size per sample follows the count.
            b"stsz" if end - body >= 12 => {
                reader.at(body + 4)?;
                let fixed = u32::from_be_bytes(reader.bytes()?);
                (fixed == 0).then_some((body + 8, 4))
            }
            _ => None,
        })
    }
}

/// Matroska and WebM: EBML elements within their parents, and the frames laced in a block
/// within the block.
mod matroska {
    use super::{Reader, overruns};
    use std::io::{Read, Seek};

    /// The master elements symphonia's Matroska reader reads into (its element table).
    const MASTERS: [u32; 30] = [
        0x1A45_DFA3, // EBML
        0x1853_8067, // Segment
        0x114D_9B74, // SeekHead
        0x4DBB,      // Seek
        0x1549_A966, // Info
        0x1F43_B675, // Cluster
        0xA0,        // BlockGroup
        0x75A1,      // BlockAdditions
        0xA6,        // BlockMore
        0x1654_AE6B, // Tracks
        0xAE,        // TrackEntry
        0xE0,        // Video
        0xE1,        // Audio
        0x6D80,      // ContentEncodings
        0x6240,      // ContentEncoding
        0x5035,      // ContentEncryption
        0x47E7,      // ContentEncAESSettings
        0x55B0,      // Colour
        0x55D0,      // MasteringMetadata
        0x1C53_BB6B, // Cues
        0xBB,        // CuePoint
        0xB7,        // CueTrackPositions
        0x1043_A770, // Chapters
        0x45B9,      // EditionEntry
        0xB6,        // ChapterAtom
        0x80,        // ChapterDisplay
        0x1254_C367, // Tags
        0x7373,      // Tag
        0x63C0,      // Targets
        0x67C8,      // SimpleTag
    ];
    const SIMPLE_BLOCK: u32 = 0xA3;
    const BLOCK: u32 = 0xA1;

    /// The most of a block read to check its lacing: 255 frame sizes take far less.
    const LACING_HEAD: usize = 4096;

    pub(super) fn check<F: Read + Seek>(reader: &mut Reader<F>, length: u64) -> Result<(), String> {
        // The ends of the elements being read, innermost last. An element of unknown size
        // (a live recording's Segment and Clusters) has no end of its own: its children
        // are held to its parent's.
        let mut ends = vec![length];
        let mut position = 0;
        while position < length {
            while ends.len() > 1 && ends.last().is_some_and(|&end| position >= end) {
                ends.pop();
            }
            let end = ends.last().copied().unwrap_or(length);
            reader.at(position)?;
            let (id, id_length) = id(reader)?;
            let (size, size_length) = vint(reader)?;
            let data = position + id_length + size_length;
            let master = MASTERS.contains(&id);
            let Some(size) = size else {
                if !master {
                    return Err(format!("the element {id:#x} has an unknown size"));
                }
                position = data;
                continue;
            };
            if data > end || size > end - data {
                return Err(overruns(
                    &format!("the element {id:#x}"),
                    size,
                    end.saturating_sub(data),
                ));
            }
            if master {
                ends.push(data + size);
                position = data;
            } else {
                if id == SIMPLE_BLOCK || id == BLOCK {
                    lacing(reader, data, size)?;
                }
                position = data + size;
            }
        }
        Ok(())
    }

    /// An element id: 1 to 4 bytes, its length marker kept.
    fn id<F: Read + Seek>(reader: &mut Reader<F>) -> Result<(u32, u64), String> {
        let first = reader.byte()?;
        let length = first.leading_zeros() + 1;
        if length > 4 {
            return Err("an element id longer than 4 bytes".to_owned());
        }
        let mut id = u32::from(first);
        for _ in 1..length {
            id = id << 8 | u32::from(reader.byte()?);
        }
        Ok((id, u64::from(length)))
    }

    /// A size: 1 to 8 bytes, its length marker removed; `None` when every bit is set (an
    /// unknown size).
    fn vint<F: Read + Seek>(reader: &mut Reader<F>) -> Result<(Option<u64>, u64), String> {
        let first = reader.byte()?;
        let length = first.leading_zeros() + 1;
        if length > 8 {
            return Err("a size longer than 8 bytes".to_owned());
        }
        let mut value = u64::from(first) & (0xFF >> length);
        for _ in 1..length {
            value = value << 8 | u64::from(reader.byte()?);
        }
        let unknown = (1u64 << (7 * length)) - 1;
        Ok(((value != unknown).then_some(value), u64::from(length)))
    }

    /// The frame sizes a laced block lists fit in the block.
    fn lacing<F: Read + Seek>(reader: &mut Reader<F>, data: u64, size: u64) -> Result<(), String> {
        let mut head = vec![0; LACING_HEAD.min(size as usize)];
        reader.at(data)?;
        reader
            .0
            .read_exact(&mut head)
            .map_err(|_| "the file ends inside a block".to_owned())?;
        super::lacing::check(&head, size)
    }
}

/// The lacing of a Matroska block (its frame sizes), read from the first bytes of the block.
mod lacing {
    /// Checks that the sizes listed in `head`, the first bytes of a block of `size` bytes,
    /// fit in the block.
    pub(super) fn check(head: &[u8], size: u64) -> Result<(), String> {
        let cut = || "a block's lacing runs past the block".to_owned();
        let mut bytes = head.iter().copied();
        let mut next = || bytes.next().ok_or_else(cut);
        // The track number (a size-like number), the timecode, the flags.
        let first = next()?;
        let track_length = first.leading_zeros() + 1;
        if track_length > 8 {
            return Err(cut());
        }
        for _ in 0..track_length + 1 {
            next()?;
        }
        let flags = next()?;
        let mut used = u64::from(track_length) + 3;
        let mut listed: u64 = 0;
        match (flags >> 1) & 0b11 {
            // None, or frames of one size shared out of the block.
            0b00 | 0b10 => return Ok(()),
            // Xiph: each size a run of 255s and a last byte.
            0b01 => {
                let frames = next()?;
                used += 1;
                for _ in 0..frames {
                    loop {
                        let byte = next()?;
                        used += 1;
                        listed += u64::from(byte);
                        if byte != 255 {
                            break;
                        }
                    }
                }
            }
            // EBML: the first size, then signed differences.
            _ => {
                let frames = next()?;
                used += 1;
                let mut previous: i64 = 0;
                for frame in 0..frames {
                    let first = next()?;
                    let length = first.leading_zeros() + 1;
                    if length > 8 {
                        return Err(cut());
                    }
                    let mut value = u64::from(first) & (0xFF >> length);
                    for _ in 1..length {
                        value = value << 8 | u64::from(next()?);
                    }
                    used += u64::from(length);
                    let frame_size = if frame == 0 {
                        i64::try_from(value).map_err(|_| cut())?
                    } else {
                        // A signed difference: the value less half its range.
                        let bias = (1i64 << (7 * length - 1)) - 1;
                        previous + (value as i64 - bias)
                    };
                    if frame_size < 0 {
                        return Err("a block lists a frame of negative size".to_owned());
                    }
                    previous = frame_size;
                    listed = listed.saturating_add(frame_size as u64);
                }
            }
        }
        if used.saturating_add(listed) > size {
            return Err(super::overruns(
                "a block's laced frames",
                listed,
                size.saturating_sub(used),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::Container;

    fn check(container: Container, bytes: &[u8]) -> Result<(), String> {
        container.check_sizes(Cursor::new(bytes), bytes.len() as u64)
    }

    /// An MP4 atom of `kind` around `body`.
    fn atom(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut atom = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        atom.extend(kind);
        atom.extend(body);
        atom
    }

    fn chunk_offsets(count: u32, entries: u32) -> Vec<u8> {
        let mut body = vec![0; 4];
        body.extend(count.to_be_bytes());
        for entry in 0..entries {
            body.extend(entry.to_be_bytes());
        }
        let table = atom(b"stco", &body);
        let stbl = atom(b"stbl", &table);
        let moov = atom(
            b"moov",
            &atom(b"trak", &atom(b"mdia", &atom(b"minf", &stbl))),
        );
        [atom(b"ftyp", b"M4A \0\0\0\0"), moov].concat()
    }

    #[test]
    fn mp4_tables_and_atoms_must_fit_what_holds_them() {
        assert_eq!(check(Container::Mp4, &chunk_offsets(3, 3)), Ok(()));
        // Four billion chunk offsets in a table of three: 16 GB that symphonia would reserve.
        let lie = check(Container::Mp4, &chunk_offsets(u32::MAX, 3)).unwrap_err();
        assert!(lie.contains("`stco` of 4294967295 entries"), "{lie}");
        // An atom claiming more than its parent holds.
        let mut long = chunk_offsets(3, 3);
        let trak_at = long
            .windows(4)
            .position(|window| window == b"trak")
            .unwrap()
            - 4;
        long[trak_at..trak_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let lie = check(Container::Mp4, &long).unwrap_err();
        assert!(
            lie.contains("the atom `trak` claims 4294967295 bytes"),
            "{lie}"
        );
        // A 64-bit size past the end of the file.
        let mut huge = atom(b"ftyp", b"M4A \0\0\0\0");
        huge.extend(1u32.to_be_bytes());
        huge.extend(b"mdat");
        huge.extend((1u64 << 60).to_be_bytes());
        assert!(check(Container::Mp4, &huge).is_err());
    }

    /// An EBML element: `id` as written, a four-byte or unknown size, `body`.
    fn element(id: &[u8], body: &[u8], unknown: bool) -> Vec<u8> {
        let mut element = id.to_vec();
        if unknown {
            element.push(0xFF);
        } else {
            // A four-byte size: its first byte's marker is 0x10.
            element.extend((0x1000_0000 | body.len() as u32).to_be_bytes());
        }
        element.extend(body);
        element
    }

    const CLUSTER: &[u8] = &[0x1F, 0x43, 0xB6, 0x75];
    const SEGMENT: &[u8] = &[0x18, 0x53, 0x80, 0x67];
    const SIMPLE_BLOCK: &[u8] = &[0xA3];

    fn webm(segment_unknown: bool, block: &[u8]) -> Vec<u8> {
        let header = element(
            &[0x1A, 0x45, 0xDF, 0xA3],
            &element(&[0x42, 0x82], b"webm", false),
            false,
        );
        let cluster = element(
            CLUSTER,
            &element(SIMPLE_BLOCK, block, false),
            segment_unknown,
        );
        [header, element(SEGMENT, &cluster, segment_unknown)].concat()
    }

    #[test]
    fn matroska_elements_and_laces_must_fit_what_holds_them() {
        // Track 1, timecode 0, no lacing, a frame of 6 bytes.
        let plain = [0x81, 0, 0, 0x80, 1, 2, 3, 4, 5, 6];
        assert_eq!(check(Container::Matroska, &webm(false, &plain)), Ok(()));
        // A live recording's unknown sizes.
        assert_eq!(check(Container::Matroska, &webm(true, &plain)), Ok(()));
        // Xiph lacing: two listed frames of 2 and 1 bytes, and the rest.
        let xiph = [0x81, 0, 0, 0x82, 2, 2, 1, 9, 9, 9, 9];
        assert_eq!(check(Container::Matroska, &webm(false, &xiph)), Ok(()));
        // The same listing a frame of 255 + 255 + 10 bytes.
        let xiph_lie = [0x81, 0, 0, 0x82, 1, 255, 255, 10, 9];
        let lie = check(Container::Matroska, &webm(false, &xiph_lie)).unwrap_err();
        assert!(lie.contains("laced frames claims 520"), "{lie}");
        // EBML lacing: a first frame of 2^40 bytes in a 12-byte block.
        let ebml_lie = [0x81, 0, 0, 0x86, 1, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0];
        let lie = check(Container::Matroska, &webm(false, &ebml_lie)).unwrap_err();
        assert!(lie.contains("laced frames"), "{lie}");
        // A block whose size runs past its cluster: 2^56 - 2 bytes claimed.
        let mut huge = webm(false, &plain);
        let at = huge.iter().rposition(|&byte| byte == 0xA3).unwrap();
        huge.splice(
            at + 1..at + 5,
            [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE],
        );
        let lie = check(Container::Matroska, &huge).unwrap_err();
        assert!(
            lie.contains("the element 0xa3 claims 72057594037927934 bytes"),
            "{lie}"
        );
        // A binary element of unknown size.
        let unknown_block = [webm(false, &plain), element(SIMPLE_BLOCK, &[], true)].concat();
        let lie = check(Container::Matroska, &unknown_block).unwrap_err();
        assert!(lie.contains("unknown size"), "{lie}");
    }

    #[test]
    fn containers_are_told_by_their_first_bytes() {
        assert_eq!(Container::of(b"RIFF\0\0\0\0WAVEfmt "), Some(Container::Wav));
        assert_eq!(
            Container::of(&[0x1A, 0x45, 0xDF, 0xA3, 0]),
            Some(Container::Matroska)
        );
        assert_eq!(Container::of(b"\0\0\0\x20ftypM4A "), Some(Container::Mp4));
        assert_eq!(Container::of(&[0xFF, 0xFB, 0x90]), Some(Container::Mp3));
        // ADTS (raw AAC) has the sync word but no layer.
        assert_eq!(Container::of(&[0xFF, 0xF1, 0x50]), None);
        assert_eq!(Container::of(b"call the bank"), None);
    }
}
