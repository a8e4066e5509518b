//! Reads CTranslate2's `model.bin`: a header, then each variable's name, shape, type and
//! bytes, then aliases (little-endian throughout). The reader walks it one variable at a
//! time, so a converter holds at most one variable in memory.

use std::io::{self, BufRead, Read, Seek};

/// A variable's element type, as CTranslate2 numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 0.
    F32,
    /// 1.
    I8,
    /// 2.
    I16,
    /// 3.
    I32,
    /// 4.
    F16,
    /// 5.
    BF16,
}

impl DType {
    fn from_code(code: u8) -> io::Result<Self> {
        Ok(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            other => return Err(invalid(format!("unknown data type {other}"))),
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// A variable's name, shape and type, read before its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableHead {
    /// `encoder/conv1/weight`.
    pub name: String,
    /// Outermost first, as PyTorch shows it.
    pub shape: Vec<usize>,
    /// The element type.
    pub dtype: DType,
    /// Bytes that follow.
    pub len: usize,
}

/// The file's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The format's version (6).
    pub version: u32,
    /// `WhisperSpec` for Whisper.
    pub spec: String,
    /// The spec's revision.
    pub revision: u32,
    /// How many variables follow.
    pub variables: u32,
}

/// A cursor over a `model.bin`.
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    header: Header,
    left: u32,
}

/// The largest variable the reader accepts (Whisper large's embedding is 262 MB in float32):
/// a lying length must not make it allocate without bound.
const MAX_VARIABLE_BYTES: usize = 1 << 30;

impl<R: BufRead> Reader<R> {
    /// Reads the header.
    ///
    /// # Errors
    ///
    /// `InvalidData` for anything but a CTranslate2 model of format version 5 or 6.
    pub fn new(mut input: R) -> io::Result<Self> {
        let version = read_u32(&mut input)?;
        if !(5..=6).contains(&version) {
            return Err(invalid(format!(
                "not a CTranslate2 model of a known version (found version {version})"
            )));
        }
        let spec = read_string(&mut input)?;
        let revision = read_u32(&mut input)?;
        let variables = read_u32(&mut input)?;
        Ok(Reader {
            input,
            header: Header {
                version,
                spec,
                revision,
                variables,
            },
            left: variables,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next variable's head; its bytes must then be read with [`read_data`](Self::read_data)
    /// or passed over with [`skip_data`](Self::skip_data). `None` after the last.
    ///
    /// # Errors
    ///
    /// `InvalidData` on a malformed head; `UnexpectedEof` on a cut file.
    pub fn next_head(&mut self) -> io::Result<Option<VariableHead>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let name = read_string(&mut self.input)?;
        let rank = read_u8(&mut self.input)?;
        let shape = (0..rank)
            .map(|_| read_u32(&mut self.input).map(|dim| dim as usize))
            .collect::<io::Result<Vec<_>>>()?;
        let dtype = DType::from_code(read_u8(&mut self.input)?)?;
        let len = read_u32(&mut self.input)? as usize;
        let elements = shape
            .iter()
            .try_fold(1usize, |product, dim| product.checked_mul(*dim));
        if elements.and_then(|n| n.checked_mul(dtype.size())) != Some(len)
            || len > MAX_VARIABLE_BYTES
        {
            return Err(invalid(format!(
                "variable `{name}` says {len} bytes for shape {shape:?} of {dtype:?}"
            )));
        }
        Ok(Some(VariableHead {
            name,
            shape,
            dtype,
            len,
        }))
    }

    /// The bytes of the variable whose head was just read.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` on a cut file.
    pub fn read_data(&mut self, head: &VariableHead) -> io::Result<Vec<u8>> {
        let mut data = vec![0; head.len];
        self.input.read_exact(&mut data)?;
        Ok(data)
    }
}

impl<R: BufRead + Seek> Reader<R> {
    /// Passes over the bytes of the variable whose head was just read.
    ///
    /// # Errors
    ///
    /// An I/O error.
    pub fn skip_data(&mut self, head: &VariableHead) -> io::Result<()> {
        let len = i64::try_from(head.len).map_err(|_| invalid("variable too large".into()))?;
        self.input.seek_relative(len)
    }
}

/// A scalar setting (`encoder/num_heads`) as an integer.
pub fn scalar(head: &VariableHead, data: &[u8]) -> Option<i64> {
    if !head.shape.is_empty() {
        return None;
    }
    Some(match head.dtype {
        DType::I8 => i64::from(i8::from_le_bytes([*data.first()?])),
        DType::I16 => i64::from(i16::from_le_bytes(data.get(..2)?.try_into().ok()?)),
        DType::I32 => i64::from(i32::from_le_bytes(data.get(..4)?.try_into().ok()?)),
        _ => return None,
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn read_u8(input: &mut impl Read) -> io::Result<u8> {
    let mut byte = [0; 1];
    input.read_exact(&mut byte)?;
    Ok(byte[0])
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut bytes = [0; 4];
    input.read_exact(&mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

/// A u16 length counting a trailing NUL, then the bytes.
fn read_string(input: &mut impl Read) -> io::Result<String> {
    let mut len = [0; 2];
    input.read_exact(&mut len)?;
    let mut bytes = vec![0; usize::from(u16::from_le_bytes(len))];
    input.read_exact(&mut bytes)?;
    if bytes.pop() != Some(0) {
        return Err(invalid("a name without its trailing NUL".into()));
    }
    String::from_utf8(bytes).map_err(|_| invalid("a name that is not UTF-8".into()))
}

/// Writes CTranslate2's layout, for the converter's tests.
#[cfg(test)]
pub(crate) mod write {
    /// A model.bin with `variables` (name, shape, type code, bytes).
    pub(crate) fn model(variables: &[(&str, &[u32], u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(6u32.to_le_bytes());
        string(&mut out, "WhisperSpec");
        out.extend(3u32.to_le_bytes());
        out.extend((variables.len() as u32).to_le_bytes());
        for (name, shape, dtype, data) in variables {
            string(&mut out, name);
            out.push(shape.len() as u8);
            for dim in *shape {
                out.extend(dim.to_le_bytes());
            }
            out.push(*dtype);
            out.extend((data.len() as u32).to_le_bytes());
            out.extend(data);
        }
        out.extend(0u32.to_le_bytes());
        out
    }

    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend(((text.len() + 1) as u16).to_le_bytes());
        out.extend(text.as_bytes());
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_read_in_order_with_their_shapes() {
        let bytes = write::model(&[
            ("encoder/num_heads", &[], 2, 8i16.to_le_bytes().to_vec()),
            ("encoder/conv1/bias", &[2], 4, vec![0, 60, 0, 188]),
        ]);
        let mut reader = Reader::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(reader.header().spec, "WhisperSpec");
        let heads = reader.next_head().unwrap().unwrap();
        let data = reader.read_data(&heads).unwrap();
        assert_eq!(scalar(&heads, &data), Some(8));
        let bias = reader.next_head().unwrap().unwrap();
        assert_eq!((bias.shape.as_slice(), bias.dtype), (&[2][..], DType::F16));
        reader.skip_data(&bias).unwrap();
        assert_eq!(reader.next_head().unwrap(), None);
    }

    #[test]
    fn a_length_that_disagrees_with_the_shape_is_refused() {
        let mut bytes = write::model(&[("w", &[4], 4, vec![0; 8])]);
        // The byte count sits after the header (4 + 14 + 4 + 4), the name (4) and the rank,
        // dimension and type (1 + 4 + 1).
        let at = 4 + 14 + 4 + 4 + 4 + 6;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut reader = Reader::new(std::io::Cursor::new(bytes)).unwrap();
        let error = reader.next_head().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }

    #[test]
    fn other_files_are_refused_by_their_header() {
        let error = Reader::new(std::io::Cursor::new(b"RIFF....WAVE".to_vec())).unwrap_err();
        assert!(
            error.to_string().contains("not a CTranslate2 model"),
            "{error}"
        );
    }
}
