//! Converts a CTranslate2 Whisper model (`model.bin` and its `vocabulary.json`) into the
//! file whisper.cpp loads: a magic number, the hyperparameters, the mel filter bank, the
//! byte-level vocabulary, then each tensor under OpenAI's checkpoint name.
//!
//! The mapping undoes CTranslate2's fusions: self-attention's `linear_0` holds query, key and
//! value stacked by rows, cross-attention's `linear_1` key and value. Whisper's keys have no
//! bias; CTranslate2 stores a zero one, which the converter checks is zero and drops. Matrices
//! are written as float16, vectors and the positional embeddings as float32 (what whisper.cpp
//! allocates for each), and the convolution biases as `[n, 1]`.

use std::collections::HashMap;
use std::io::{self, BufRead, Seek, SeekFrom, Write};

use super::ct2::{self, DType, VariableHead};
use super::mel;

/// whisper.cpp's file magic, `ggml` in ASCII.
const MAGIC: u32 = 0x6767_6d6c;
/// The type codes of the tensor records.
const GGML_F32: i32 = 0;
const GGML_F16: i32 = 1;
const GGML_Q8_0: i32 = 8;
/// Values per 8-bit block: one float16 scale and 32 signed bytes.
const Q8_0_BLOCK: usize = 32;

/// How the model's matrices are stored; the rest (vectors, positional embeddings) is
/// float32, and the convolutions float16, either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// float16, as the source.
    F16,
    /// ggml's `q8_0`: blocks of 32 values sharing a float16 scale, each value a signed byte
    /// (what faster-whisper's `int8` is to CTranslate2). About half the size, and faster on
    /// CPUs, for no measurable change of words.
    Q8_0,
}

impl Weights {
    /// The file's `ftype`, as whisper.cpp reads it.
    fn ftype(self) -> usize {
        match self {
            Weights::F16 => 1,
            Weights::Q8_0 => 7,
        }
    }
}

/// What a conversion needs and yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hparams {
    /// Tokens, special ones included.
    pub n_vocab: usize,
    /// Encoder positions (1500: 30 s at 50 frames a second).
    pub n_audio_ctx: usize,
    /// Encoder width.
    pub n_audio_state: usize,
    /// Encoder attention heads.
    pub n_audio_head: usize,
    /// Encoder layers.
    pub n_audio_layer: usize,
    /// Decoder positions (448).
    pub n_text_ctx: usize,
    /// Decoder width.
    pub n_text_state: usize,
    /// Decoder attention heads.
    pub n_text_head: usize,
    /// Decoder layers.
    pub n_text_layer: usize,
    /// Mel bins of the input.
    pub n_mels: usize,
}

impl Hparams {
    /// The tensors whisper.cpp expects for these sizes (it refuses a file with more or fewer).
    pub fn tensor_count(&self) -> usize {
        // Encoder: positions, two convolutions with biases, the final norm; 15 per layer.
        // Decoder: positions, token embedding, the final norm; 15 per layer for itself and 9
        // for cross-attention.
        7 + 15 * self.n_audio_layer + 4 + 24 * self.n_text_layer
    }
}

/// Why a model cannot be converted.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConvertError {
    /// Reading or writing failed.
    Io(io::Error),
    /// The model is not a Whisper model this converter understands.
    Model(String),
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvertError::Io(error) => write!(f, "{error}"),
            ConvertError::Model(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for ConvertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConvertError::Io(error) => Some(error),
            ConvertError::Model(_) => None,
        }
    }
}

impl From<io::Error> for ConvertError {
    fn from(error: io::Error) -> Self {
        ConvertError::Io(error)
    }
}

fn model_error(message: impl Into<String>) -> ConvertError {
    ConvertError::Model(message.into())
}

/// Where a CTranslate2 variable goes: nowhere (a scalar setting), or split by rows into equal
/// parts, each written under a name or, for `None`, checked to be zero and dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A setting such as `decoder/num_heads`, or the alias of the embedding.
    Skip,
    /// The parts, top rows first.
    Rows(Vec<Option<String>>),
}

/// The whisper.cpp name(s) of CTranslate2 variable `name`.
///
/// # Errors
///
/// [`ConvertError::Model`] for a variable the converter does not know: a model of another
/// shape must not be half converted.
pub fn target(name: &str) -> Result<Target, ConvertError> {
    let one = |name: String| Ok(Target::Rows(vec![Some(name)]));
    let unknown = || Err(model_error(format!("unknown variable `{name}`")));
    let Some((system, rest)) = name.split_once('/') else {
        return unknown();
    };
    if !matches!(system, "encoder" | "decoder") {
        return unknown();
    }
    if !rest.contains('/') {
        // `num_heads`, `activation`, `pre_norm` and the other settings.
        return Ok(Target::Skip);
    }
    let norm = |param: &str| match param {
        "gamma" => Some("weight"),
        "beta" => Some("bias"),
        _ => None,
    };
    if let Some(layer) = rest.strip_prefix("layer_")
        && let Some((index, inner)) = layer.split_once('/')
        && index.parse::<usize>().is_ok()
    {
        let block = format!("{system}.blocks.{index}");
        let (module, param) = inner.rsplit_once('/').unwrap_or((inner, ""));
        return match (module, param) {
            ("self_attention/layer_norm", p)
            | ("attention/layer_norm", p)
            | ("ffn/layer_norm", p) => match norm(p) {
                Some(p) => {
                    let ln = match module {
                        "self_attention/layer_norm" => "attn_ln",
                        "attention/layer_norm" => "cross_attn_ln",
                        _ => "mlp_ln",
                    };
                    one(format!("{block}.{ln}.{p}"))
                }
                None => unknown(),
            },
            ("self_attention/linear_0", "weight") => Ok(Target::Rows(vec![
                Some(format!("{block}.attn.query.weight")),
                Some(format!("{block}.attn.key.weight")),
                Some(format!("{block}.attn.value.weight")),
            ])),
            ("self_attention/linear_0", "bias") => Ok(Target::Rows(vec![
                Some(format!("{block}.attn.query.bias")),
                None,
                Some(format!("{block}.attn.value.bias")),
            ])),
            ("self_attention/linear_1", p @ ("weight" | "bias")) => {
                one(format!("{block}.attn.out.{p}"))
            }
            ("attention/linear_0", p @ ("weight" | "bias")) if system == "decoder" => {
                one(format!("{block}.cross_attn.query.{p}"))
            }
            ("attention/linear_1", "weight") if system == "decoder" => Ok(Target::Rows(vec![
                Some(format!("{block}.cross_attn.key.weight")),
                Some(format!("{block}.cross_attn.value.weight")),
            ])),
            ("attention/linear_1", "bias") if system == "decoder" => Ok(Target::Rows(vec![
                None,
                Some(format!("{block}.cross_attn.value.bias")),
            ])),
            ("attention/linear_2", p @ ("weight" | "bias")) if system == "decoder" => {
                one(format!("{block}.cross_attn.out.{p}"))
            }
            ("ffn/linear_0", p @ ("weight" | "bias")) => one(format!("{block}.mlp.0.{p}")),
            ("ffn/linear_1", p @ ("weight" | "bias")) => one(format!("{block}.mlp.2.{p}")),
            _ => unknown(),
        };
    }
    match (system, rest) {
        ("encoder", conv @ ("conv1/weight" | "conv1/bias" | "conv2/weight" | "conv2/bias")) => {
            one(format!("encoder.{}", conv.replace('/', ".")))
        }
        (_, "position_encodings/encodings") => one(format!("{system}.positional_embedding")),
        ("encoder", "layer_norm/gamma") => one("encoder.ln_post.weight".to_owned()),
        ("encoder", "layer_norm/beta") => one("encoder.ln_post.bias".to_owned()),
        ("decoder", "layer_norm/gamma") => one("decoder.ln.weight".to_owned()),
        ("decoder", "layer_norm/beta") => one("decoder.ln.bias".to_owned()),
        ("decoder", "embeddings/weight") => one("decoder.token_embedding.weight".to_owned()),
        _ => unknown(),
    }
}

/// The type code of tensor `name` of `rank` as whisper.cpp allocates it: the model's weight
/// type for the matrices, float16 for the convolutions, float32 for vectors and the
/// positional embeddings.
pub fn stored_type(name: &str, rank: usize, weights: Weights) -> i32 {
    match rank {
        _ if name.ends_with("positional_embedding") => GGML_F32,
        2 if weights == Weights::Q8_0 => GGML_Q8_0,
        2 | 3 => GGML_F16,
        _ => GGML_F32,
    }
}

/// The dimensions written for tensor `name` of PyTorch `shape`: innermost first, as ggml
/// counts them, with the convolution biases as `[n, 1]`.
pub fn ggml_dims(name: &str, shape: &[usize]) -> Vec<usize> {
    let mut dims: Vec<usize> = shape.iter().rev().copied().collect();
    if name.starts_with("encoder.conv") && name.ends_with(".bias") {
        dims.insert(0, 1);
    }
    dims
}

/// Reads the sizes from the variables' heads (and the two head-count settings).
fn hparams<R: BufRead + Seek>(model: &mut ct2::Reader<R>) -> Result<Hparams, ConvertError> {
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    let mut heads: HashMap<&'static str, i64> = HashMap::new();
    let (mut audio_layers, mut text_layers) = (0, 0);
    while let Some(head) = model.next_head()? {
        if let Some(key) = match head.name.as_str() {
            "encoder/num_heads" => Some("encoder"),
            "decoder/num_heads" => Some("decoder"),
            _ => None,
        } {
            let data = model.read_data(&head)?;
            let value = ct2::scalar(&head, &data)
                .ok_or_else(|| model_error(format!("`{}` is not an integer", head.name)))?;
            heads.insert(key, value);
            continue;
        }
        for (prefix, layers) in [
            ("encoder/layer_", &mut audio_layers),
            ("decoder/layer_", &mut text_layers),
        ] {
            if let Some(index) = head
                .name
                .strip_prefix(prefix)
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(index, _)| index.parse::<usize>().ok())
            {
                *layers = (*layers).max(index + 1);
            }
        }
        model.skip_data(&head)?;
        shapes.insert(head.name, head.shape);
    }
    let dim = |name: &str, axis: usize| -> Result<usize, ConvertError> {
        shapes
            .get(name)
            .and_then(|shape| shape.get(axis).copied())
            .ok_or_else(|| model_error(format!("the model has no `{name}`")))
    };
    let head_count = |key: &str| -> Result<usize, ConvertError> {
        heads
            .get(key)
            .and_then(|&value| usize::try_from(value).ok())
            .filter(|&value| value > 0)
            .ok_or_else(|| model_error(format!("the model has no `{key}/num_heads`")))
    };
    Ok(Hparams {
        n_vocab: dim("decoder/embeddings/weight", 0)?,
        n_audio_ctx: dim("encoder/position_encodings/encodings", 0)?,
        n_audio_state: dim("encoder/position_encodings/encodings", 1)?,
        n_audio_head: head_count("encoder")?,
        n_audio_layer: audio_layers,
        n_text_ctx: dim("decoder/position_encodings/encodings", 0)?,
        n_text_state: dim("decoder/position_encodings/encodings", 1)?,
        n_text_head: head_count("decoder")?,
        n_text_layer: text_layers,
        n_mels: dim("encoder/conv1/weight", 1)?,
    })
}

/// GPT-2's byte-level alphabet: each byte as the printable character its BPE vocabulary
/// spells it with (printable Latin-1 as itself, the rest shifted past 255).
fn byte_of_char() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let ch = if printable {
            char::from(byte)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        map.insert(ch, byte);
    }
    map
}

/// The bytes of each ordinary token: those before `<|endoftext|>`, decoded from their
/// byte-level spelling. whisper.cpp names the special tokens itself.
///
/// # Errors
///
/// [`ConvertError::Model`] without `<|endoftext|>` or with a token outside the alphabet.
pub fn vocabulary_bytes(tokens: &[String]) -> Result<Vec<Vec<u8>>, ConvertError> {
    let end = tokens
        .iter()
        .position(|token| token == "<|endoftext|>")
        .ok_or_else(|| model_error("the vocabulary has no <|endoftext|>"))?;
    let alphabet = byte_of_char();
    tokens[..end]
        .iter()
        .map(|token| {
            token
                .chars()
                .map(|ch| alphabet.get(&ch).copied())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| model_error(format!("token `{token}` is not byte-level BPE")))
        })
        .collect()
}

/// Converts `model` with its `vocabulary` into whisper.cpp's format with its matrices as
/// `weights`, written to `out`.
///
/// # Errors
///
/// A [`ConvertError`]; `out` then holds a partial file, which the caller discards.
pub fn convert<R: BufRead + Seek>(
    mut model: R,
    vocabulary: &[String],
    weights: Weights,
    out: &mut impl Write,
) -> Result<Hparams, ConvertError> {
    let start = model.stream_position()?;
    let mut reader = ct2::Reader::new(&mut model)?;
    if reader.header().spec != "WhisperSpec" {
        return Err(model_error(format!(
            "a `{}` model, not Whisper",
            reader.header().spec
        )));
    }
    let hparams = hparams(&mut reader)?;
    if vocabulary.len() != hparams.n_vocab {
        return Err(model_error(format!(
            "the vocabulary has {} tokens, the model {}",
            vocabulary.len(),
            hparams.n_vocab
        )));
    }
    write_header(out, &hparams, weights, &vocabulary_bytes(vocabulary)?)?;

    model.seek(SeekFrom::Start(start))?;
    let mut reader = ct2::Reader::new(&mut model)?;
    let mut written = 0;
    while let Some(head) = reader.next_head()? {
        match target(&head.name)? {
            Target::Skip => reader.skip_data(&head)?,
            Target::Rows(parts) => {
                let data = reader.read_data(&head)?;
                written += write_parts(out, &head, &data, &parts, weights)?;
            }
        }
    }
    if written != hparams.tensor_count() {
        return Err(model_error(format!(
            "wrote {written} tensors where whisper.cpp expects {}",
            hparams.tensor_count()
        )));
    }
    Ok(hparams)
}

fn write_i32(out: &mut impl Write, value: usize) -> io::Result<()> {
    let value = i32::try_from(value)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a size over 2^31"))?;
    out.write_all(&value.to_le_bytes())
}

fn write_header(
    out: &mut impl Write,
    hp: &Hparams,
    weights: Weights,
    vocabulary: &[Vec<u8>],
) -> io::Result<()> {
    out.write_all(&MAGIC.to_le_bytes())?;
    for value in [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
    ] {
        write_i32(out, value)?;
    }
    write_i32(out, weights.ftype())?;
    let filters = mel::filters(hp.n_mels);
    write_i32(out, hp.n_mels)?;
    write_i32(out, mel::N_FFT / 2 + 1)?;
    for weight in filters {
        out.write_all(&weight.to_le_bytes())?;
    }
    write_i32(out, vocabulary.len())?;
    for token in vocabulary {
        write_i32(out, token.len())?;
        out.write_all(token)?;
    }
    Ok(())
}

/// Writes each named part of a variable split by rows; returns how many were written.
fn write_parts(
    out: &mut impl Write,
    head: &VariableHead,
    data: &[u8],
    parts: &[Option<String>],
    weights: Weights,
) -> Result<usize, ConvertError> {
    if !matches!(head.dtype, DType::F16 | DType::F32) {
        return Err(model_error(format!(
            "`{}` is {:?}; the converter reads float16 or float32 models",
            head.name, head.dtype
        )));
    }
    let rows = head.shape.first().copied().unwrap_or(1);
    if !rows.is_multiple_of(parts.len()) {
        return Err(model_error(format!(
            "`{}` has {rows} rows, not a multiple of {}",
            head.name,
            parts.len()
        )));
    }
    let mut shape = head.shape.clone();
    if let Some(first) = shape.first_mut() {
        *first = rows / parts.len();
    }
    let part_len = data.len() / parts.len();
    let mut written = 0;
    for (part, bytes) in parts.iter().zip(data.chunks(part_len)) {
        let values = floats(head.dtype, bytes);
        let Some(name) = part else {
            if values.iter().any(|value| *value != 0.0) {
                return Err(model_error(format!(
                    "`{}` has a non-zero key bias, which whisper.cpp cannot hold",
                    head.name
                )));
            }
            continue;
        };
        write_tensor(out, name, &shape, &values, weights)?;
        written += 1;
    }
    Ok(written)
}

fn floats(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|pair| half::f16::from_le_bytes([pair[0], pair[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|quad| f32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]))
            .collect(),
    }
}

fn write_tensor(
    out: &mut impl Write,
    name: &str,
    shape: &[usize],
    values: &[f32],
    weights: Weights,
) -> io::Result<()> {
    let dims = ggml_dims(name, shape);
    let ttype = stored_type(name, shape.len(), weights);
    write_i32(out, dims.len())?;
    write_i32(out, name.len())?;
    out.write_all(&ttype.to_le_bytes())?;
    for dim in &dims {
        write_i32(out, *dim)?;
    }
    out.write_all(name.as_bytes())?;
    let buffer = match ttype {
        GGML_F16 => values
            .iter()
            .flat_map(|value| half::f16::from_f32(*value).to_le_bytes())
            .collect(),
        GGML_Q8_0 => {
            if !dims[0].is_multiple_of(Q8_0_BLOCK) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("`{name}` has rows of {}, not a multiple of 32", dims[0]),
                ));
            }
            quantize_q8_0(values)
        }
        _ => values
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect::<Vec<u8>>(),
    };
    out.write_all(&buffer)
}

/// ggml's reference `q8_0` quantisation (the one meant for model files): per block of 32, the
/// scale is the largest magnitude over 127 and each value its rounded quotient.
fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / Q8_0_BLOCK * (2 + Q8_0_BLOCK));
    for block in values.chunks(Q8_0_BLOCK) {
        let largest = block.iter().fold(0.0f32, |max, value| max.max(value.abs()));
        let scale = largest / 127.0;
        let inverse = if scale == 0.0 { 0.0 } else { 1.0 / scale };
        out.extend(half::f16::from_f32(scale).to_le_bytes());
        out.extend(
            block
                .iter()
                .map(|value| (value * inverse).round() as i8 as u8),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ct2::write;

    fn f16s(values: &[f32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|value| half::f16::from_f32(*value).to_le_bytes())
            .collect()
    }

    #[test]
    fn fused_attention_is_split_back_into_openais_names() {
        assert_eq!(
            target("encoder/layer_3/self_attention/linear_0/weight").unwrap(),
            Target::Rows(vec![
                Some("encoder.blocks.3.attn.query.weight".into()),
                Some("encoder.blocks.3.attn.key.weight".into()),
                Some("encoder.blocks.3.attn.value.weight".into()),
            ])
        );
        assert_eq!(
            target("decoder/layer_0/attention/linear_1/bias").unwrap(),
            Target::Rows(vec![
                None,
                Some("decoder.blocks.0.cross_attn.value.bias".into())
            ])
        );
        assert_eq!(
            target("decoder/layer_5/attention/linear_2/weight").unwrap(),
            Target::Rows(vec![Some("decoder.blocks.5.cross_attn.out.weight".into())])
        );
        for (from, to) in [
            (
                "encoder/layer_0/ffn/linear_1/bias",
                "encoder.blocks.0.mlp.2.bias",
            ),
            (
                "decoder/layer_2/attention/layer_norm/gamma",
                "decoder.blocks.2.cross_attn_ln.weight",
            ),
            (
                "encoder/layer_0/self_attention/layer_norm/beta",
                "encoder.blocks.0.attn_ln.bias",
            ),
            ("encoder/layer_norm/gamma", "encoder.ln_post.weight"),
            ("decoder/layer_norm/beta", "decoder.ln.bias"),
            (
                "decoder/embeddings/weight",
                "decoder.token_embedding.weight",
            ),
            (
                "encoder/position_encodings/encodings",
                "encoder.positional_embedding",
            ),
            ("encoder/conv2/bias", "encoder.conv2.bias"),
        ] {
            assert_eq!(
                target(from).unwrap(),
                Target::Rows(vec![Some(to.into())]),
                "{from}"
            );
        }
        assert_eq!(target("decoder/num_heads").unwrap(), Target::Skip);
        // The encoder has no cross-attention; anything unknown stops the conversion.
        assert!(target("encoder/layer_0/attention/linear_0/weight").is_err());
        assert!(target("encoder/layer_0/ffn/linear_9/weight").is_err());
        assert!(target("lm_head/weight").is_err());
    }

    #[test]
    fn types_and_dimensions_are_what_whisper_cpp_allocates() {
        let f16 = Weights::F16;
        assert_eq!(stored_type("encoder.conv1.weight", 3, f16), GGML_F16);
        assert_eq!(
            stored_type("decoder.token_embedding.weight", 2, f16),
            GGML_F16
        );
        assert_eq!(
            stored_type("decoder.positional_embedding", 2, f16),
            GGML_F32
        );
        assert_eq!(
            stored_type("encoder.blocks.0.attn.query.bias", 1, f16),
            GGML_F32
        );
        let q8 = Weights::Q8_0;
        assert_eq!(
            stored_type("decoder.token_embedding.weight", 2, q8),
            GGML_Q8_0
        );
        assert_eq!(stored_type("encoder.conv2.weight", 3, q8), GGML_F16);
        assert_eq!(stored_type("encoder.positional_embedding", 2, q8), GGML_F32);
        assert_eq!(
            ggml_dims("encoder.conv1.weight", &[512, 80, 3]),
            [3, 80, 512]
        );
        assert_eq!(ggml_dims("encoder.conv1.bias", &[512]), [1, 512]);
        assert_eq!(
            ggml_dims("decoder.blocks.0.mlp.0.weight", &[2048, 512]),
            [512, 2048]
        );
    }

    #[test]
    fn q8_0_blocks_hold_a_scale_and_rounded_quotients() {
        let mut values = vec![0.0f32; 64];
        values[0] = 1.27;
        values[1] = -0.635;
        values[2] = 0.004;
        let blocks = quantize_q8_0(&values);
        assert_eq!(blocks.len(), 2 * 34);
        let scale = half::f16::from_le_bytes([blocks[0], blocks[1]]).to_f32();
        assert!((scale - 0.01).abs() < 1e-5, "{scale}");
        assert_eq!(blocks[2] as i8, 127);
        // -63.5 rounds away from zero, as C's roundf does.
        assert_eq!(blocks[3] as i8, -64);
        assert_eq!(blocks[4] as i8, 0);
        // An all-zero block has a zero scale and zero values.
        assert!(blocks[34..].iter().all(|byte| *byte == 0));
    }

    #[test]
    fn byte_level_tokens_decode_to_their_bytes() {
        let tokens: Vec<String> = ["hello", "Ġworld", "Ċ", "Ã©", "", "<|endoftext|>", "<|en|>"]
            .iter()
            .map(|token| (*token).to_owned())
            .collect();
        let bytes = vocabulary_bytes(&tokens).unwrap();
        assert_eq!(bytes.len(), 5, "special tokens are left to whisper.cpp");
        assert_eq!(bytes[1], b" world");
        assert_eq!(bytes[2], b"\n");
        assert_eq!(String::from_utf8(bytes[3].clone()).unwrap(), "é");
        assert!(bytes[4].is_empty());
    }

    /// A whole Whisper of one layer each, width 4, two heads, 2 mel bins, a vocabulary of 3.
    fn tiny_model(key_bias: f32) -> Vec<u8> {
        let d = 4u32;
        let vector = |value: f32| f16s(&vec![value; d as usize]);
        let matrix =
            |rows: u32, cols: u32| f16s(&(0..rows * cols).map(|i| i as f32).collect::<Vec<_>>());
        let mut qkv_bias = vec![1.0; 4];
        qkv_bias.extend(vec![key_bias; 4]);
        qkv_bias.extend(vec![3.0; 4]);
        let mut variables: Vec<(String, Vec<u32>, u8, Vec<u8>)> = vec![
            (
                "encoder/num_heads".into(),
                vec![],
                2,
                2i16.to_le_bytes().to_vec(),
            ),
            (
                "decoder/num_heads".into(),
                vec![],
                2,
                2i16.to_le_bytes().to_vec(),
            ),
            (
                "encoder/conv1/weight".into(),
                vec![d, 2, 3],
                4,
                matrix(d, 6),
            ),
            ("encoder/conv1/bias".into(), vec![d], 4, vector(0.5)),
            (
                "encoder/conv2/weight".into(),
                vec![d, d, 3],
                4,
                matrix(d, 12),
            ),
            ("encoder/conv2/bias".into(), vec![d], 4, vector(0.5)),
            (
                "encoder/position_encodings/encodings".into(),
                vec![6, d],
                4,
                matrix(6, d),
            ),
            ("encoder/layer_norm/gamma".into(), vec![d], 4, vector(1.0)),
            ("encoder/layer_norm/beta".into(), vec![d], 4, vector(0.0)),
            (
                "decoder/embeddings/weight".into(),
                vec![3, d],
                4,
                matrix(3, d),
            ),
            (
                "decoder/position_encodings/encodings".into(),
                vec![5, d],
                4,
                matrix(5, d),
            ),
            ("decoder/layer_norm/gamma".into(), vec![d], 4, vector(1.0)),
            ("decoder/layer_norm/beta".into(), vec![d], 4, vector(0.0)),
        ];
        for system in ["encoder", "decoder"] {
            let layer = format!("{system}/layer_0");
            let mut add = |name: &str, shape: Vec<u32>, data: Vec<u8>| {
                variables.push((format!("{layer}/{name}"), shape, 4, data));
            };
            add("self_attention/layer_norm/gamma", vec![d], vector(1.0));
            add("self_attention/layer_norm/beta", vec![d], vector(0.0));
            add(
                "self_attention/linear_0/weight",
                vec![3 * d, d],
                matrix(3 * d, d),
            );
            add("self_attention/linear_0/bias", vec![3 * d], f16s(&qkv_bias));
            add("self_attention/linear_1/weight", vec![d, d], matrix(d, d));
            add("self_attention/linear_1/bias", vec![d], vector(0.0));
            add("ffn/layer_norm/gamma", vec![d], vector(1.0));
            add("ffn/layer_norm/beta", vec![d], vector(0.0));
            add("ffn/linear_0/weight", vec![2 * d, d], matrix(2 * d, d));
            add("ffn/linear_0/bias", vec![2 * d], f16s(&[0.0; 8]));
            add("ffn/linear_1/weight", vec![d, 2 * d], matrix(d, 2 * d));
            add("ffn/linear_1/bias", vec![d], vector(0.0));
            if system == "decoder" {
                add("attention/layer_norm/gamma", vec![d], vector(1.0));
                add("attention/layer_norm/beta", vec![d], vector(0.0));
                add("attention/linear_0/weight", vec![d, d], matrix(d, d));
                add("attention/linear_0/bias", vec![d], vector(0.0));
                add(
                    "attention/linear_1/weight",
                    vec![2 * d, d],
                    matrix(2 * d, d),
                );
                let mut kv_bias = vec![0.0; 4];
                kv_bias.extend([7.0; 4]);
                add("attention/linear_1/bias", vec![2 * d], f16s(&kv_bias));
                add("attention/linear_2/weight", vec![d, d], matrix(d, d));
                add("attention/linear_2/bias", vec![d], vector(0.0));
            }
        }
        let borrowed: Vec<(&str, &[u32], u8, Vec<u8>)> = variables
            .iter()
            .map(|(name, shape, dtype, data)| {
                (name.as_str(), shape.as_slice(), *dtype, data.clone())
            })
            .collect();
        write::model(&borrowed)
    }

    /// Reads back a converted file: hparams, then the tensors by name (dims, type, values).
    /// A tensor read back: its dimensions, type code and values.
    type ReadTensor = (Vec<i32>, i32, Vec<f32>);

    fn read_back(bytes: &[u8]) -> (Vec<i32>, HashMap<String, ReadTensor>) {
        let mut at = 0;
        let i32_at = |at: &mut usize| {
            let value = i32::from_le_bytes(bytes[*at..*at + 4].try_into().unwrap());
            *at += 4;
            value
        };
        assert_eq!(i32_at(&mut at) as u32, MAGIC);
        let hparams: Vec<i32> = (0..11).map(|_| i32_at(&mut at)).collect();
        let (n_mel, n_fft) = (i32_at(&mut at), i32_at(&mut at));
        at += (n_mel * n_fft) as usize * 4;
        for _ in 0..i32_at(&mut at) {
            let len = i32_at(&mut at) as usize;
            at += len;
        }
        let mut tensors = HashMap::new();
        while at < bytes.len() {
            let (rank, name_len, ttype) = (i32_at(&mut at), i32_at(&mut at), i32_at(&mut at));
            let dims: Vec<i32> = (0..rank).map(|_| i32_at(&mut at)).collect();
            let name = String::from_utf8(bytes[at..at + name_len as usize].to_vec()).unwrap();
            at += name_len as usize;
            let count: i32 = dims.iter().product();
            let size = if ttype == GGML_F16 { 2 } else { 4 };
            let data = &bytes[at..at + count as usize * size];
            at += data.len();
            let values = floats(
                if ttype == GGML_F16 {
                    DType::F16
                } else {
                    DType::F32
                },
                data,
            );
            tensors.insert(name, (dims, ttype, values));
        }
        (hparams, tensors)
    }

    #[test]
    fn a_tiny_whisper_converts_into_every_tensor_whisper_cpp_expects() {
        let vocabulary: Vec<String> = ["a", "b", "<|endoftext|>"].map(String::from).to_vec();
        let mut out = Vec::new();
        let hparams = convert(
            std::io::Cursor::new(tiny_model(0.0)),
            &vocabulary,
            Weights::F16,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            (hparams.n_vocab, hparams.n_audio_layer, hparams.n_text_head),
            (3, 1, 2)
        );
        let (header, tensors) = read_back(&out);
        assert_eq!(header, [3, 6, 4, 2, 1, 5, 4, 2, 1, 2, 1]);
        assert_eq!(tensors.len(), hparams.tensor_count());
        // The fused rows, split in order: rows 0-3 query, 4-7 key, 8-11 value.
        let (dims, ttype, key) = &tensors["encoder.blocks.0.attn.key.weight"];
        assert_eq!((dims.as_slice(), *ttype), (&[4, 4][..], GGML_F16));
        assert_eq!(key[0], 16.0);
        assert_eq!(tensors["decoder.blocks.0.attn.value.bias"].2, [3.0; 4]);
        assert_eq!(
            tensors["decoder.blocks.0.cross_attn.value.bias"].2,
            [7.0; 4]
        );
        assert!(!tensors.contains_key("encoder.blocks.0.attn.key.bias"));
        let (dims, ttype, _) = &tensors["encoder.conv1.bias"];
        assert_eq!((dims.as_slice(), *ttype), (&[1, 4][..], GGML_F32));
        assert_eq!(tensors["decoder.positional_embedding"].1, GGML_F32);
    }

    #[test]
    fn a_key_bias_that_is_not_zero_stops_the_conversion() {
        let vocabulary: Vec<String> = ["a", "b", "<|endoftext|>"].map(String::from).to_vec();
        let error = convert(
            std::io::Cursor::new(tiny_model(0.25)),
            &vocabulary,
            Weights::F16,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("non-zero key bias"), "{error}");
    }

    #[test]
    fn a_vocabulary_of_another_size_is_refused() {
        let vocabulary: Vec<String> = ["a", "<|endoftext|>"].map(String::from).to_vec();
        let error = convert(
            std::io::Cursor::new(tiny_model(0.0)),
            &vocabulary,
            Weights::F16,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("the vocabulary has 2 tokens"),
            "{error}"
        );
    }
}
