//! A GGUF header reader in plain Rust, and the header checks that keep llama.cpp from
//! aborting the process.
//!
//! llama.cpp checks many header values with `GGML_ASSERT`, which calls `abort()`: a bad
//! file would kill the whole Node process instead of failing one load. So every header
//! value that llama.cpp asserts on while loading is checked here first, against the same
//! rule, and a file that breaks one is an error. The rules follow the llama.cpp that
//! `llama-cpp-sys-2` pins in Cargo.toml: `ggml/src/gguf.cpp` (the container),
//! `src/llama-model.cpp` (`llama_model_base::load_hparams`), `src/llama-vocab.cpp`
//! (`llama_vocab::impl::load`) and `src/llama-arch.cpp` (the architectures). Re-read them
//! when that pin moves; the `known_architectures_match_llama_cpp` test notices when the
//! list of architectures changes.
//!
//! Nothing here calls into llama.cpp: the file is read with Rust I/O, and every length in
//! it is checked against the bytes left in the file before anything is allocated.

/// Counts come from the file: reserve no more than this up front (the vectors grow),
/// so that a forged count in a huge file cannot make an allocation fail (an abort).
const PREALLOCATE_AT_MOST: u64 = 65_536;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::ops::Range;
use std::path::Path;

/// `LLAMA_MAX_LAYERS` (src/llama-hparams.h).
pub(crate) const LLAMA_MAX_LAYERS: u32 = 512;
/// `LLAMA_MAX_EXPERTS` (src/llama-hparams.h).
pub(crate) const LLAMA_MAX_EXPERTS: u32 = 1024;
/// Well above any released model (the largest are near 25,000); a bigger value is
/// corruption, and bounding it keeps the size arithmetic far from overflowing.
pub(crate) const MAX_EMBEDDING_LENGTH: u32 = 1 << 20;
/// Training context: above every released model (10M tokens is the largest).
pub(crate) const MAX_CONTEXT_LENGTH: u32 = 1 << 24;
/// Attention heads per layer: released models use at most a few hundred.
pub(crate) const MAX_HEADS: u32 = 1 << 16;
/// `GGML_MAX_NAME`: gguf.cpp rejects longer tensor names.
const GGML_MAX_NAME: usize = 64;
/// `GGML_MAX_DIMS`.
const GGML_MAX_DIMS: u32 = 4;
/// `GGUF_DEFAULT_ALIGNMENT`.
const DEFAULT_ALIGNMENT: u64 = 32;
/// Smallest possible key-value entry: key length, a 1-byte key, type, a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Smallest possible tensor info: name length, dimension count, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;
/// Numeric arrays up to this length are kept: per-layer values (at most 512) fit.
const KEEP_ARRAY_ITEMS: u64 = 4096;
/// The one string array whose items the checks need.
const TOKENS_KEY: &str = "tokenizer.ggml.tokens";

/// Every architecture name in `LLM_ARCH_NAMES` (src/llama-arch.cpp), less "clip" (a
/// vision encoder that llama.cpp only quantizes) and "(unknown)".
pub(crate) const KNOWN_ARCHITECTURES: &[&str] = &[
    "llama",
    "llama4",
    "deci",
    "falcon",
    "grok",
    "gpt2",
    "gptj",
    "gptneox",
    "mpt",
    "baichuan",
    "starcoder",
    "refact",
    "bert",
    "modern-bert",
    "nomic-bert",
    "nomic-bert-moe",
    "neo-bert",
    "jina-bert-v2",
    "jina-bert-v3",
    "eurobert",
    "bloom",
    "stablelm",
    "qwen",
    "qwen2",
    "qwen2moe",
    "qwen2vl",
    "qwen3",
    "qwen3moe",
    "qwen3next",
    "qwen3vl",
    "qwen3vlmoe",
    "qwen35",
    "qwen35moe",
    "clef",
    "qwen4exp",
    "phi2",
    "phi3",
    "phimoe",
    "plamo",
    "plamo2",
    "plamo3",
    "codeshell",
    "orion",
    "internlm2",
    "minicpm",
    "minicpm3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma4-assistant",
    "gemma-embedding",
    "starcoder2",
    "mamba",
    "mamba2",
    "maple",
    "jamba",
    "falcon-h1",
    "xverse",
    "command-r",
    "cohere2",
    "cohere2moe",
    "dbrx",
    "olmo",
    "olmo2",
    "olmoe",
    "muse-glimmer",
    "openelm",
    "arctic",
    "deepseek",
    "deepseek2",
    "deepseek2-ocr",
    "deepseek32",
    "deepseek4",
    "chatglm",
    "glm4",
    "glm4moe",
    "glm-dsa",
    "bitnet",
    "t5",
    "t5encoder",
    "jais",
    "jais2",
    "nemotron",
    "nemotron_h",
    "nemotron_h_moe",
    "exaone",
    "exaone4",
    "exaone-moe",
    "rwkv6",
    "rwkv6qwen2",
    "rwkv7",
    "arwkv7",
    "granite",
    "granitemoe",
    "granitehybrid",
    "graniteswitch",
    "granite_swa",
    "chameleon",
    "wavtokenizer-dec",
    "plm",
    "bailingmoe",
    "bailingmoe2",
    "bailingmoe3",
    "dots1",
    "dots3note",
    "arcee",
    "afmoe",
    "laguna",
    "ernie4_5",
    "ernie4_5-moe",
    "hunyuan-moe",
    "hunyuan-dense",
    "hunyuan_vl",
    "hy_v3",
    "hy_v4",
    "smollm3",
    "gpt-oss",
    "lfm2",
    "lfm2moe",
    "dream",
    "smallthinker",
    "llada",
    "llada-moe",
    "seed_oss",
    "grovemoe",
    "apertus",
    "minimax-01",
    "hrm_text",
    "minimax-m2",
    "minimax-m3",
    "cogvlm",
    "rnd1",
    "pangu-embedded",
    "mistral3",
    "eagle3",
    "dflash",
    "mistral4",
    "paddleocr",
    "mimo2",
    "step35",
    "spark2_5",
    "llama-embed",
    "maincoder",
    "kimi-linear",
    "kimi-k3",
    "glm5-next",
    "talkie",
    "mellum",
    "nanbeige",
    "qwen3tts",
    "pockettts",
];

/// Architectures without attention heads (`llm_arch_is_recurrent`), and an audio decoder
/// that need not declare them.
const WITHOUT_HEADS: &[&str] = &[
    "mamba",
    "mamba2",
    "rwkv6",
    "rwkv6qwen2",
    "rwkv7",
    "arwkv7",
    "wavtokenizer-dec",
];

/// Architectures whose layers may go without attention, marked by a head count of 0 in
/// that layer (recurrent layers of hybrid models, Nemotron-51B's attention-free layers):
/// their graphs (src/models/*.cpp) test for it. Elsewhere such a layer meets weights
/// shaped for heads, and ggml asserts when the first token is computed.
const LAYERS_WITHOUT_ATTENTION: &[&str] = &[
    "bailingmoe3",
    "deci",
    "falcon-h1",
    "glm5-next",
    "granitehybrid",
    "jamba",
    "kimi-k3",
    "kimi-linear",
    "lfm2",
    "lfm2moe",
    "minimax-01",
    "nanbeige",
    "nemotron_h",
    "nemotron_h_moe",
    "plamo2",
    "qwen35",
    "qwen35moe",
    "qwen3next",
    "qwen4exp",
    "rwkv6qwen2",
];

/// The rope scaling names llama.cpp parses (`LLAMA_ROPE_SCALING_TYPES`).
const ROPE_SCALING_TYPES: &[&str] = &["none", "linear", "yarn", "longrope"];

/// A GGUF value type, numbered as in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    Str,
    Array,
    U64,
    I64,
    F64,
}

impl Ty {
    pub(crate) fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::Str,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    #[cfg(test)]
    pub(crate) fn raw(self) -> u32 {
        self as u32
    }

    /// Bytes of one value; strings and arrays are length-prefixed instead.
    fn fixed_size(self) -> Option<u64> {
        match self {
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::Str | Self::Array => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::U8 => "u8",
            Self::I8 => "i8",
            Self::U16 => "u16",
            Self::I16 => "i16",
            Self::U32 => "u32",
            Self::I32 => "i32",
            Self::F32 => "f32",
            Self::Bool => "bool",
            Self::Str => "string",
            Self::Array => "array",
            Self::U64 => "u64",
            Self::I64 => "i64",
            Self::F64 => "f64",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// Every integer type, and bool as 0 or 1.
    Int(i128),
    Float(f64),
    Str(Vec<u8>),
    /// `items` is kept for short numeric arrays and for the token list only.
    Array {
        elem: Ty,
        len: u64,
        items: Option<Vec<Value>>,
    },
}

// The reader records the file's layout (byte spans, offsets, the tensor infos) along with
// the values. The checks read keys, types, values and the tensors' shapes and types; the
// layout is what the GGUF fuzz test (in `engine.rs`) edits files by, hence the
// `dead_code` allowances outside tests below.
#[derive(Clone, Debug)]
pub(crate) struct Kv {
    pub(crate) key: Vec<u8>,
    pub(crate) ty: Ty,
    pub(crate) value: Value,
    /// The whole entry, key length to value end, as a byte range of the file.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) span: Range<u64>,
    /// Where the value (after the type) starts.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) value_at: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct TensorInfo {
    pub(crate) name: Vec<u8>,
    pub(crate) dims: Vec<i64>,
    pub(crate) ggml_type: u32,
    pub(crate) offset: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Header {
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) version: u32,
    pub(crate) file_len: u64,
    pub(crate) kvs: Vec<Kv>,
    index: HashMap<Vec<u8>, usize>,
    pub(crate) tensors: Vec<TensorInfo>,
    /// The tensor infos, as a byte range of the file.
    pub(crate) tensor_span: Range<u64>,
    pub(crate) alignment: u64,
}

impl Header {
    pub(crate) fn get(&self, key: &str) -> Option<&Kv> {
        self.index.get(key.as_bytes()).map(|&i| &self.kvs[i])
    }

    /// Where the tensor data starts: after the infos, aligned.
    #[cfg(test)]
    pub(crate) fn data_start(&self) -> u64 {
        self.tensor_span.end.div_ceil(self.alignment) * self.alignment
    }
}

/// Bytes of a GGUF string for a message: lossy, and cut short.
fn shown(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() > 64 {
        format!("{:?}…", s.chars().take(64).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

struct Reader<R> {
    r: BufReader<R>,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn need(&self, n: u64, what: &dyn Fn() -> String) -> Result<(), String> {
        if n > self.remaining() {
            return Err(format!(
                "{} at byte {} needs {n} bytes but the file ends {} bytes later (truncated?)",
                what(),
                self.pos,
                self.remaining()
            ));
        }
        Ok(())
    }

    fn bytes(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<Vec<u8>, String> {
        self.need(n, what)?;
        // `need` bounded n by the file's length, so this allocation is no bigger than it.
        let mut b = vec![0; n as usize];
        self.r
            .read_exact(&mut b)
            .map_err(|e| format!("{}: read failed at byte {}: {e}", what(), self.pos))?;
        self.pos += n;
        Ok(b)
    }

    fn skip(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<(), String> {
        self.need(n, what)?;
        let step = i64::try_from(n).map_err(|_| format!("{}: {n} bytes", what()))?;
        self.r
            .seek_relative(step)
            .map_err(|e| format!("{}: seek failed at byte {}: {e}", what(), self.pos))?;
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], String> {
        let b = self.bytes(N as u64, what)?;
        let mut a = [0; N];
        a.copy_from_slice(&b);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<Vec<u8>, String> {
        let n = self.u64(what)?;
        self.bytes(n, what)
    }

    fn scalar(&mut self, ty: Ty, what: &dyn Fn() -> String) -> Result<Value, String> {
        Ok(match ty {
            Ty::U8 => Value::Int(self.array::<1>(what)?[0].into()),
            Ty::I8 => Value::Int((self.array::<1>(what)?[0] as i8).into()),
            // gguf.cpp reads a byte: any non-zero one is true.
            Ty::Bool => Value::Int((self.array::<1>(what)?[0] != 0).into()),
            Ty::U16 => Value::Int(u16::from_le_bytes(self.array(what)?).into()),
            Ty::I16 => Value::Int(i16::from_le_bytes(self.array(what)?).into()),
            Ty::U32 => Value::Int(u32::from_le_bytes(self.array(what)?).into()),
            Ty::I32 => Value::Int(i32::from_le_bytes(self.array(what)?).into()),
            Ty::U64 => Value::Int(u64::from_le_bytes(self.array(what)?).into()),
            Ty::I64 => Value::Int(i64::from_le_bytes(self.array(what)?).into()),
            Ty::F32 => Value::Float(f32::from_le_bytes(self.array(what)?).into()),
            Ty::F64 => Value::Float(f64::from_le_bytes(self.array(what)?)),
            Ty::Str => Value::Str(self.string(what)?),
            Ty::Array => return Err(format!("{}: nested arrays are not GGUF", what())),
        })
    }
}

/// Read a GGUF file's header: key-values and tensor infos, not the tensor data.
pub(crate) fn read_header(path: &Path) -> Result<Header, String> {
    let f = File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?
        .len();
    parse(f, len)
}

fn parse<R: Read + Seek>(r: R, len: u64) -> Result<Header, String> {
    let mut r = Reader {
        r: BufReader::with_capacity(1 << 16, r),
        pos: 0,
        len,
    };
    let magic = r.bytes(4, &|| "the GGUF magic number".into())?;
    if magic != b"GGUF" {
        // Not the bytes themselves: a path to someone else's file must not read it out.
        return Err("is not a GGUF file (it does not start with the GGUF magic number)".into());
    }
    let version = r.u32(&|| "the GGUF version".into())?;
    if !(2..=3).contains(&version) {
        return Err(format!(
            "GGUF version = {version}: llama.cpp reads versions 2 and 3"
        ));
    }
    let n_tensors = r.u64(&|| "the tensor count".into())?;
    let n_kv = r.u64(&|| "the key-value count".into())?;
    // Counts the file cannot hold are corruption; refusing them also bounds every loop
    // and allocation below by the file's size.
    if n_tensors > len / MIN_TENSOR_INFO_BYTES {
        return Err(format!(
            "tensor_count = {n_tensors}, more than a {len}-byte file can describe"
        ));
    }
    if n_kv > len / MIN_KV_BYTES {
        return Err(format!(
            "kv_count = {n_kv}, more than a {len}-byte file can hold"
        ));
    }

    let mut kvs = Vec::with_capacity(n_kv.min(PREALLOCATE_AT_MOST) as usize);
    let mut index = HashMap::with_capacity(n_kv.min(PREALLOCATE_AT_MOST) as usize);
    for i in 0..n_kv {
        let kv = read_kv(&mut r, i)?;
        if index.insert(kv.key.clone(), kvs.len()).is_some() {
            return Err(format!("key {} appears twice", shown(&kv.key)));
        }
        kvs.push(kv);
    }

    let alignment = match index.get(b"general.alignment".as_slice()).map(|&i| &kvs[i]) {
        None => DEFAULT_ALIGNMENT,
        Some(Kv {
            ty: Ty::U32,
            value: Value::Int(a),
            ..
        }) if *a > 0 && (*a as u64).is_power_of_two() => *a as u64,
        Some(kv) => {
            return Err(match kv.value {
                Value::Int(a) if kv.ty == Ty::U32 => {
                    format!("general.alignment = {a}: it must be a power of two")
                }
                _ => format!("general.alignment has type {}, not u32", kv.ty.name()),
            })
        }
    };

    let tensor_start = r.pos;
    let mut tensors = Vec::with_capacity(n_tensors.min(PREALLOCATE_AT_MOST) as usize);
    let mut names = HashSet::with_capacity(n_tensors.min(PREALLOCATE_AT_MOST) as usize);
    for i in 0..n_tensors {
        let t = read_tensor_info(&mut r, i)?;
        if !names.insert(t.name.clone()) {
            return Err(format!("tensor {} appears twice", shown(&t.name)));
        }
        tensors.push(t);
    }
    Ok(Header {
        version,
        file_len: len,
        kvs,
        index,
        tensors,
        tensor_span: tensor_start..r.pos,
        alignment,
    })
}

fn read_kv<R: Read + Seek>(r: &mut Reader<R>, i: u64) -> Result<Kv, String> {
    let start = r.pos;
    let key = r.string(&|| format!("key #{i}"))?;
    if key.is_empty() {
        return Err(format!("key #{i} is empty"));
    }
    let name = || shown(&key);
    let raw = r.u32(&|| format!("the type of {}", name()))?;
    let ty = Ty::from_raw(raw)
        .ok_or_else(|| format!("{} has value type {raw}, not a GGUF type", name()))?;
    let value_at = r.pos;
    let what = || format!("the value of {}", name());
    let value = if ty == Ty::Array {
        let raw = r.u32(&what)?;
        let elem = Ty::from_raw(raw)
            .filter(|t| *t != Ty::Array)
            .ok_or_else(|| format!("{} is an array of type {raw}, not a GGUF type", name()))?;
        let n = r.u64(&what)?;
        // Strings take at least their 8-byte length.
        let least = elem.fixed_size().unwrap_or(8);
        if n.checked_mul(least).is_none_or(|b| b > r.remaining()) {
            return Err(format!(
                "{} claims {n} {} values, more than the {} bytes left in the file hold",
                name(),
                elem.name(),
                r.remaining()
            ));
        }
        let keep = match elem {
            Ty::Str => key == TOKENS_KEY.as_bytes(),
            _ => n <= KEEP_ARRAY_ITEMS,
        };
        let items = if keep {
            let mut items = Vec::with_capacity(n.min(PREALLOCATE_AT_MOST) as usize);
            for _ in 0..n {
                items.push(r.scalar(elem, &what)?);
            }
            Some(items)
        } else {
            match elem.fixed_size() {
                Some(size) => r.skip(n * size, &what)?,
                None => {
                    for _ in 0..n {
                        let l = r.u64(&what)?;
                        r.skip(l, &what)?;
                    }
                }
            }
            None
        };
        Value::Array {
            elem,
            len: n,
            items,
        }
    } else {
        r.scalar(ty, &what)?
    };
    Ok(Kv {
        key,
        ty,
        value,
        span: start..r.pos,
        value_at,
    })
}

fn read_tensor_info<R: Read + Seek>(r: &mut Reader<R>, i: u64) -> Result<TensorInfo, String> {
    let name = r.string(&|| format!("the name of tensor #{i}"))?;
    if name.len() >= GGML_MAX_NAME {
        return Err(format!(
            "tensor #{i} is named {}, longer than llama.cpp's {} bytes",
            shown(&name),
            GGML_MAX_NAME - 1
        ));
    }
    let what = || format!("tensor {}", shown(&name));
    let n_dims = r.u32(&what)?;
    if n_dims > GGML_MAX_DIMS {
        return Err(format!(
            "{} has {n_dims} dimensions, more than {GGML_MAX_DIMS}",
            what()
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    let mut elements: i64 = 1;
    for d in 0..n_dims {
        let n = i64::from_le_bytes(r.array(&what)?);
        // gguf.cpp allows 0, but llama.cpp's tensor code assumes every dimension is
        // at least 1, and no real model has an empty tensor.
        if n < 1 {
            return Err(format!(
                "{} has dimension {d} = {n}; it must be at least 1",
                what()
            ));
        }
        elements = elements
            .checked_mul(n)
            .ok_or_else(|| format!("{} has more elements than fit in 64 bits", what()))?;
        dims.push(n);
    }
    let ggml_type = r.u32(&what)?;
    let offset = r.u64(&what)?;
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
    })
}

/// What the checks found, for the memory estimate.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Hparams {
    pub(crate) arch: String,
    pub(crate) n_layer: u32,
    pub(crate) n_embd: u32,
    pub(crate) n_ctx_train: u32,
    /// Tokens in the vocabulary (`tokenizer.ggml.tokens`): the width of the logits.
    pub(crate) n_vocab: u32,
    /// K plus V values one token keeps in each layer's cache.
    pub(crate) kv_per_layer: Vec<u64>,
    /// The file's quantization (`Q4_K_M`, `Q8_0`, ...), from its tensors: see
    /// [`quantization`].
    pub(crate) quantization: Option<String>,
    /// Bytes of each layer's tensors (`blk.<i>.*`) and of the output's (`output.*`,
    /// `output_norm.*`), which llama.cpp offloads after the last layer: what a GPU
    /// device needs for them ([`tensor_bytes`]).
    pub(crate) layer_bytes: Vec<u64>,
    pub(crate) output_bytes: u64,
    /// `<arch>.pooling_type`: how an embedding model pools its tokens (llama.cpp's
    /// `llama_pooling_type`: 0 none, 1 mean, 2 CLS, 3 last token, 4 rank).
    pub(crate) pooling: Option<u32>,
}

impl Hparams {
    /// Bytes of an f16 KV cache of `n_ctx` tokens; `None` if that overflows a u64.
    pub(crate) fn kv_cache_bytes(&self, n_ctx: u32) -> Option<u64> {
        self.kv_per_layer
            .iter()
            .try_fold(0u64, |sum, &n| sum.checked_add(n))?
            .checked_mul(2)?
            .checked_mul(n_ctx.into())
    }
}

/// An optional u32 key. llama.cpp reads these with `get_key<uint32_t>`, which accepts
/// only `GGUF_TYPE_UINT32`.
fn opt_u32(h: &Header, key: &str) -> Result<Option<u32>, String> {
    match h.get(key) {
        None => Ok(None),
        Some(Kv {
            ty: Ty::U32,
            value: Value::Int(v),
            ..
        }) => Ok(Some(*v as u32)),
        Some(kv) => Err(format!(
            "{key} has type {}; llama.cpp reads a u32",
            kv.ty.name()
        )),
    }
}

fn req_u32(h: &Header, key: &str) -> Result<u32, String> {
    opt_u32(h, key)?.ok_or_else(|| format!("{key} is missing"))
}

/// A per-layer u32 value (`get_key_or_arr`): one u32 for every layer, or an array with
/// one value per layer whose elements llama.cpp copies as u32 (u32, i32 or bool).
fn per_layer(h: &Header, key: &str, n_layer: u32) -> Result<Option<Vec<u32>>, String> {
    let Some(kv) = h.get(key) else {
        return Ok(None);
    };
    match &kv.value {
        Value::Int(v) if kv.ty == Ty::U32 => Ok(Some(vec![*v as u32; n_layer as usize])),
        Value::Array { elem, len, items } => {
            if *len != u64::from(n_layer) {
                return Err(format!(
                    "{key} has {len} values but the model has {n_layer} layers"
                ));
            }
            if !matches!(elem, Ty::U32 | Ty::I32 | Ty::Bool) {
                return Err(format!(
                    "{key} is an array of {}; llama.cpp reads u32 values",
                    elem.name()
                ));
            }
            let items = items
                .as_ref()
                .ok_or_else(|| format!("{key}: {len} values were not kept"))?;
            Ok(Some(
                items
                    .iter()
                    .map(|v| match v {
                        // i32 elements are copied bit for bit, as llama.cpp does.
                        Value::Int(i) => *i as i32 as u32,
                        _ => 0,
                    })
                    .collect(),
            ))
        }
        _ => Err(format!(
            "{key} has type {}; llama.cpp reads a u32, or an array with one per layer",
            kv.ty.name()
        )),
    }
}

/// `<arch>.rope.scaling.type`, one of llama.cpp's names.
fn check_rope_scaling(h: &Header, k: &dyn Fn(&str) -> String) -> Result<(), String> {
    // GGML_ASSERT(hparams.rope_scaling_type_train != LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED)
    if let Some(kv) = h.get(&k("rope.scaling.type")) {
        match &kv.value {
            Value::Str(s) if ROPE_SCALING_TYPES.iter().any(|t| t.as_bytes() == s) => {}
            Value::Str(s) => {
                return Err(format!(
                    "{} = {}: llama.cpp knows {}",
                    k("rope.scaling.type"),
                    shown(s),
                    ROPE_SCALING_TYPES.join(", ")
                ))
            }
            _ => {
                return Err(format!(
                    "{} has type {}, not string",
                    k("rope.scaling.type"),
                    kv.ty.name()
                ))
            }
        }
    }
    Ok(())
}

/// `<arch>.pooling_type`, checked with the classifier's: an embedding context's graph
/// aborts (`GGML_ABORT`, "unknown pooling type") on any value but 0 to 4.
fn check_pooling(h: &Header, k: &dyn Fn(&str) -> String) -> Result<Option<u32>, String> {
    let pooling = opt_u32(h, &k("pooling_type"))?;
    for (name, value) in [
        ("pooling_type", pooling),
        (
            "classifier.pooling_type",
            opt_u32(h, &k("classifier.pooling_type"))?,
        ),
    ] {
        if let Some(p) = value.filter(|&p| p > 4) {
            return Err(format!(
                "{} = {p}: llama.cpp knows 0 (none) to 4 (rank)",
                k(name)
            ));
        }
    }
    Ok(pooling)
}

/// Check what llama.cpp asserts on while loading a model from this header.
pub(crate) fn check(h: &Header) -> Result<Hparams, String> {
    let arch = match h.get("general.architecture") {
        None => return Err("general.architecture is missing".into()),
        Some(Kv {
            value: Value::Str(s),
            ..
        }) => s,
        Some(kv) => {
            return Err(format!(
                "general.architecture has type {}, not string",
                kv.ty.name()
            ))
        }
    };
    let arch = match std::str::from_utf8(arch) {
        Ok(a) if KNOWN_ARCHITECTURES.contains(&a) => a,
        Ok("clip") => return Err(
            "general.architecture = \"clip\": a vision projector (mmproj), not a language model"
                .into(),
        ),
        _ => {
            return Err(format!(
                "general.architecture = {}: not an architecture this llama.cpp knows",
                shown(arch)
            ))
        }
    };
    let k = |name: &str| format!("{arch}.{name}");

    // GGML_ASSERT(hparams.n_layer_all > 0 && hparams.n_layer_all <= LLAMA_MAX_LAYERS)
    let n_layer = req_u32(h, &k("block_count"))?;
    if !(1..=LLAMA_MAX_LAYERS).contains(&n_layer) {
        return Err(format!(
            "{} = {n_layer}: llama.cpp supports 1 to {LLAMA_MAX_LAYERS} layers",
            k("block_count")
        ));
    }
    let n_ctx_train = req_u32(h, &k("context_length"))?;
    if !(1..=MAX_CONTEXT_LENGTH).contains(&n_ctx_train) {
        return Err(format!(
            "{} = {n_ctx_train}: expected 1 to {MAX_CONTEXT_LENGTH} tokens",
            k("context_length")
        ));
    }
    // Zero makes every weight shape empty, which llama.cpp's tensor code asserts against.
    let n_embd = req_u32(h, &k("embedding_length"))?;
    if !(1..=MAX_EMBEDDING_LENGTH).contains(&n_embd) {
        return Err(format!(
            "{} = {n_embd}: expected 1 to {MAX_EMBEDDING_LENGTH}",
            k("embedding_length")
        ));
    }
    // GGML_ASSERT(hparams.n_layer_nextn <= hparams.n_layer_all)
    if let Some(n) = opt_u32(h, &k("nextn_predict_layers"))? {
        if n > n_layer {
            return Err(format!(
                "{} = {n}: more than the {n_layer} layers",
                k("nextn_predict_layers")
            ));
        }
    }
    check_experts(h, arch, n_layer, &k)?;
    if arch == "wavtokenizer-dec" {
        // GGML_ASSERT(hparams.posnet.n_layer <= hparams.n_layer_all), and convnext's.
        for name in ["posnet.block_count", "convnext.block_count"] {
            if let Some(n) = opt_u32(h, &k(name))? {
                if n > n_layer {
                    return Err(format!("{} = {n}: more than the {n_layer} layers", k(name)));
                }
            }
        }
    }
    check_rope_scaling(h, &k)?;
    check_floats(h, arch)?;
    let pooling = check_pooling(h, &k)?;
    let kv_per_layer = check_heads(h, arch, n_layer, n_embd, &k)?;
    let n_vocab = check_vocab(h)?;
    let (layer_bytes, output_bytes) = tensor_bytes(h, n_layer);
    Ok(Hparams {
        arch: arch.to_string(),
        n_layer,
        n_embd,
        n_ctx_train,
        n_vocab,
        kv_per_layer,
        quantization: quantization(h),
        layer_bytes,
        output_bytes,
        pooling,
    })
}

/// Bytes of each layer's tensors and of the output's, from where each tensor's data
/// starts: up to the next tensor's start (alignment padding included), the last one to
/// the end of the file. A model without `output.weight` ties its output to the token
/// embeddings, and llama.cpp then puts a copy of `token_embd.weight` with the output:
/// counted there.
pub(crate) fn tensor_bytes(h: &Header, n_layer: u32) -> (Vec<u64>, u64) {
    let data_start = h.tensor_span.end.div_ceil(h.alignment.max(1)) * h.alignment.max(1);
    let data_len = h.file_len.saturating_sub(data_start);
    let mut order: Vec<&TensorInfo> = h.tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    let mut layers = vec![0u64; n_layer as usize];
    let mut output = 0u64;
    let tied = !h.tensors.iter().any(|t| t.name == b"output.weight");
    for (i, t) in order.iter().enumerate() {
        let end = order.get(i + 1).map_or(data_len, |n| n.offset);
        let bytes = end.saturating_sub(t.offset);
        let name = String::from_utf8_lossy(&t.name);
        if let Some(rest) = name.strip_prefix("blk.") {
            let layer = rest.split('.').next().and_then(|n| n.parse::<usize>().ok());
            if let Some(slot) = layer.and_then(|l| layers.get_mut(l)) {
                *slot = slot.saturating_add(bytes);
            }
        } else if name.starts_with("output") || (tied && name == "token_embd.weight") {
            output = output.saturating_add(bytes);
        }
    }
    (layers, output)
}

/// `LLAMA_FTYPE_*` (include/llama.h): the name of each file type and the ggml type of
/// most of its weights.
const FILE_TYPES: &[(i128, &str, u32)] = &[
    (0, "F32", 0),
    (1, "F16", 1),
    (2, "Q4_0", 2),
    (3, "Q4_1", 3),
    (7, "Q8_0", 8),
    (8, "Q5_0", 6),
    (9, "Q5_1", 7),
    (10, "Q2_K", 10),
    (11, "Q3_K_S", 11),
    (12, "Q3_K_M", 11),
    (13, "Q3_K_L", 11),
    (14, "Q4_K_S", 12),
    (15, "Q4_K_M", 12),
    (16, "Q5_K_S", 13),
    (17, "Q5_K_M", 13),
    (18, "Q6_K", 14),
    (19, "IQ2_XXS", 16),
    (20, "IQ2_XS", 17),
    (21, "Q2_K_S", 10),
    (22, "IQ3_XS", 21),
    (23, "IQ3_XXS", 18),
    (24, "IQ1_S", 19),
    (25, "IQ4_NL", 20),
    (26, "IQ3_S", 21),
    (27, "IQ3_M", 21),
    (28, "IQ2_S", 22),
    (29, "IQ2_M", 22),
    (30, "IQ4_XS", 23),
    (31, "IQ1_M", 29),
    (32, "BF16", 30),
    (36, "TQ1_0", 34),
    (37, "TQ2_0", 35),
    (38, "MXFP4_MOE", 39),
    (39, "NVFP4", 40),
    (40, "Q1_0", 41),
    (41, "Q2_0", 42),
];

/// `GGML_TYPE_*` names (ggml/include/ggml.h), for files without a known file type.
fn ggml_type_name(t: u32) -> Option<&'static str> {
    Some(match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        42 => "Q2_0",
        _ => return None,
    })
}

/// The quantization a file holds, from what is in it rather than from its name or the
/// registry level it was listed under (a `Q4_1` file registered as `q4` is not `Q4_K_M`).
/// `general.file_type` names the mix (`Q4_K_M` and `Q4_K_S` both hold `Q4_K` weights); it is
/// taken when the weights (tensors of two or more dimensions) hold its main type.
/// Otherwise the type most weights have names it: counted by tensors, not elements, as
/// a small model's token embedding, often kept at a higher precision, can outweigh all
/// of its layers.
pub(crate) fn quantization(h: &Header) -> Option<String> {
    let mut tensors: HashMap<u32, (usize, u128)> = HashMap::new();
    for t in h.tensors.iter().filter(|t| t.dims.len() >= 2) {
        let n: u128 = t.dims.iter().map(|&d| d.max(0) as u128).product();
        let e = tensors.entry(t.ggml_type).or_default();
        *e = (e.0 + 1, e.1 + n);
    }
    let declared = match h.get("general.file_type").map(|kv| &kv.value) {
        Some(Value::Int(v)) => FILE_TYPES.iter().find(|(id, ..)| id == v),
        _ => None,
    };
    if let Some((_, name, main)) = declared {
        if tensors.contains_key(main) {
            return Some((*name).to_string());
        }
    }
    tensors
        .into_iter()
        .max_by_key(|&(t, counts)| (counts, std::cmp::Reverse(t)))
        .and_then(|(t, _)| ggml_type_name(t))
        .map(str::to_string)
}

/// The largest normalization epsilon accepted: released models use 1e-12 to 1e-5. A
/// value near 1 already drowns the activations it is added to; bigger is corruption.
pub(crate) const MAX_NORM_EPSILON: f64 = 1.0;

/// A float value as the file holds it: an f32 printed as an f32 (`0.00001`, not
/// `0.000009999999747378752`).
fn float_shown(ty: Ty, v: f64) -> String {
    if ty == Ty::F32 {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    }
}

/// The float hyperparameters llama.cpp uses unchecked. Norm epsilons reach ggml's
/// `GGML_ASSERT(eps >= 0.0f)` (false for NaN too) when the first token is computed,
/// which aborts the process; a rope base of NaN, 0 or below makes every rotation NaN
/// and every answer empty; NaN anywhere is never a parameter. Only float values are
/// looked at: llama.cpp's `get_key<float>` refuses other types itself, with an exception
/// that fails the load, not an abort.
fn check_floats(h: &Header, arch: &str) -> Result<(), String> {
    let prefix = format!("{arch}.");
    for kv in &h.kvs {
        let Some(name) = kv.key.strip_prefix(prefix.as_bytes()) else {
            continue;
        };
        let key = String::from_utf8_lossy(&kv.key);
        let (elem, values): (Ty, Vec<f64>) = match &kv.value {
            Value::Float(v) => (kv.ty, vec![*v]),
            Value::Array {
                elem,
                items: Some(items),
                ..
            } => (
                *elem,
                items
                    .iter()
                    .filter_map(|v| match v {
                        Value::Float(f) => Some(*f),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => continue,
        };
        if values.iter().any(|v| v.is_nan()) {
            return Err(format!("{key} = NaN: not a number"));
        }
        let Value::Float(v) = kv.value else { continue };
        let shown = float_shown(elem, v);
        // `attention.layer_norm_epsilon`, `attention.layer_norm_rms_epsilon`,
        // `attention.group_norm_epsilon`, `hyper_connection.epsilon`.
        if name.ends_with(b"epsilon") && !(v > 0.0 && v <= MAX_NORM_EPSILON) {
            return Err(format!(
                "{key} = {shown}: a normalization epsilon must be above 0 and at most \
                 {MAX_NORM_EPSILON}"
            ));
        }
        if name.starts_with(b"rope.freq_base") && !(v > 0.0 && v.is_finite()) {
            return Err(format!(
                "{key} = {shown}: the rope frequency base must be a positive finite number"
            ));
        }
        // llama.cpp reads a scaling factor of 0 as "not given" (a scale of 1), and
        // otherwise uses 1 / factor.
        if (name == b"rope.scaling.factor" || name == b"rope.scale_linear")
            && !(v >= 0.0 && v.is_finite())
        {
            return Err(format!(
                "{key} = {shown}: the rope scaling factor must be a finite number, 0 or more"
            ));
        }
        if name == b"rope.scaling.attn_factor" && !(v > 0.0 && v.is_finite()) {
            return Err(format!(
                "{key} = {shown}: the rope attention factor must be a positive finite number"
            ));
        }
    }
    Ok(())
}

/// The expert asserts at the end of the first half of `load_hparams`.
fn check_experts(
    h: &Header,
    arch: &str,
    n_layer: u32,
    k: &dyn Fn(&str) -> String,
) -> Result<(), String> {
    let mut n_expert = opt_u32(h, &k("expert_count"))?.unwrap_or(0);
    let mut used_max = per_layer(h, &k("expert_used_count"), n_layer)?
        .map_or(0, |v| v.into_iter().max().unwrap_or(0));
    let groups = opt_u32(h, &k("expert_group_count"))?.unwrap_or(0);
    let group_used = opt_u32(h, &k("expert_group_used_count"))?.unwrap_or(0);
    // llama.cpp turns these two into dense models before its asserts.
    if matches!(arch, "hunyuan_vl" | "hunyuan-dense") && n_expert <= 1 {
        n_expert = 0;
        used_max = 0;
    }
    if n_expert > LLAMA_MAX_EXPERTS {
        return Err(format!(
            "{} = {n_expert}: llama.cpp supports at most {LLAMA_MAX_EXPERTS} experts",
            k("expert_count")
        ));
    }
    if used_max > n_expert {
        return Err(format!(
            "{} = {used_max}: more than {} = {n_expert}",
            k("expert_used_count"),
            k("expert_count")
        ));
    }
    if n_expert == 0 {
        if groups != 0 {
            return Err(format!(
                "{} = {groups} in a model without experts",
                k("expert_group_count")
            ));
        }
        return Ok(());
    }
    if used_max == 0 {
        return Err(format!(
            "{} is 0 (or missing) but {} = {n_expert}",
            k("expert_used_count"),
            k("expert_count")
        ));
    }
    if groups >= n_expert {
        return Err(format!(
            "{} = {groups}: not fewer than the {n_expert} experts",
            k("expert_group_count")
        ));
    }
    if groups > 1 && (!n_expert.is_multiple_of(groups) || group_used == 0 || group_used >= groups) {
        return Err(format!(
            "{} = {groups} with {} = {group_used}: the groups must divide the {n_expert} experts \
             and between 1 and {} of them be used",
            k("expert_group_count"),
            k("expert_group_used_count"),
            groups - 1
        ));
    }
    Ok(())
}

/// Attention heads, per layer, and the K plus V width each layer caches per token.
fn check_heads(
    h: &Header,
    arch: &str,
    n_layer: u32,
    n_embd: u32,
    k: &dyn Fn(&str) -> String,
) -> Result<Vec<u64>, String> {
    let without_heads = WITHOUT_HEADS.contains(&arch);
    let head_key = k("attention.head_count");
    let kv_key = k("attention.head_count_kv");
    let n_head = match per_layer(h, &head_key, n_layer)? {
        Some(v) => v,
        None if without_heads => vec![0; n_layer as usize],
        None => return Err(format!("{head_key} is missing")),
    };
    let scalar = |key: &str| h.get(key).is_some_and(|kv| kv.ty != Ty::Array);
    // Defaults to head_count, as in llama.cpp.
    let n_head_kv = per_layer(h, &kv_key, n_layer)?.unwrap_or_else(|| n_head.clone());
    for (il, (&heads, &kv_heads)) in n_head.iter().zip(&n_head_kv).enumerate() {
        if heads > MAX_HEADS {
            return Err(format!(
                "{head_key} = {heads} (layer {il}): expected at most {MAX_HEADS}"
            ));
        }
        // One head count for every layer: 0 only where the architecture has no attention.
        if heads == 0 && scalar(&head_key) && !without_heads {
            return Err(format!(
                "{head_key} = 0: a {arch} model needs attention heads"
            ));
        }
        if kv_heads == 0 && heads > 0 && scalar(&kv_key) {
            return Err(format!(
                "{kv_key} = 0 with {head_key} = {heads}: at least one KV head is needed"
            ));
        }
        if kv_heads > heads {
            return Err(format!(
                "{kv_key} = {kv_heads} (layer {il}): more than {head_key} = {heads}"
            ));
        }
        if (heads == 0 || kv_heads == 0)
            && !without_heads
            && !LAYERS_WITHOUT_ATTENTION.contains(&arch)
        {
            let (key, n) = if heads == 0 {
                (&head_key, heads)
            } else {
                (&kv_key, kv_heads)
            };
            return Err(format!(
                "{key} = {n} (layer {il}): a {arch} model has attention in every layer"
            ));
        }
        // Grouped-query attention broadcasts each KV head over a whole number of query
        // heads; ggml asserts on a remainder when it builds the graph.
        if kv_heads > 0 && !heads.is_multiple_of(kv_heads) {
            return Err(format!(
                "{head_key} = {heads} is not a multiple of {kv_key} = {kv_heads} (layer {il})"
            ));
        }
    }
    let key_len = opt_u32(h, &k("attention.key_length"))?;
    let value_len = opt_u32(h, &k("attention.value_length"))?;
    for (name, len) in [
        ("attention.key_length", key_len),
        ("attention.value_length", value_len),
    ] {
        if let Some(n) = len.filter(|n| !(1..=MAX_EMBEDDING_LENGTH).contains(n)) {
            return Err(format!(
                "{} = {n}: expected 1 to {MAX_EMBEDDING_LENGTH}",
                k(name)
            ));
        }
    }
    // llama.cpp sizes a head as embedding_length / head_count of the first layer unless
    // the lengths are given; a remainder would give weight shapes no file can match.
    let heads0 = n_head[0];
    if heads0 > 0 && (key_len.is_none() || value_len.is_none()) && !n_embd.is_multiple_of(heads0) {
        return Err(format!(
            "{} = {n_embd} is not a multiple of {head_key} = {heads0}",
            k("embedding_length")
        ));
    }
    let derived = n_embd.checked_div(heads0).unwrap_or(0);
    // ggml's rope asserts `n_dims % 2 == 0` and `n_dims <= ne0` (the head size) when the
    // first token is computed: an abort at the first generation, not at load.
    if heads0 > 0 {
        let head_k = key_len.unwrap_or(derived);
        let head_k_swa = opt_u32(h, &k("attention.key_length_swa"))?.unwrap_or(head_k);
        for (name, head) in [
            ("rope.dimension_count", head_k),
            ("rope.dimension_count_swa", head_k_swa),
        ] {
            if let Some(n) = opt_u32(h, &k(name))? {
                if n % 2 != 0 || n > head {
                    return Err(format!(
                        "{} = {n}: the rotated dimensions must be an even number, at most the \
                         head size {head}",
                        k(name)
                    ));
                }
            }
        }
    }
    let width = u64::from(key_len.unwrap_or(derived)) + u64::from(value_len.unwrap_or(derived));
    n_head_kv
        .iter()
        .map(|&kv_heads| {
            width
                .checked_mul(kv_heads.into())
                .ok_or_else(|| format!("{kv_key} = {kv_heads}: the KV cache size overflows"))
        })
        .collect()
}

/// `llama_vocab::impl::load` asserts that no token text appears twice (after it renames
/// empty tokens). The number of tokens.
fn check_vocab(h: &Header) -> Result<u32, String> {
    let model = match h.get("tokenizer.ggml.model") {
        None => return Err("tokenizer.ggml.model is missing".into()),
        Some(Kv {
            value: Value::Str(s),
            ..
        }) => s,
        Some(kv) => {
            return Err(format!(
                "tokenizer.ggml.model has type {}, not string",
                kv.ty.name()
            ))
        }
    };
    // These models have no token list: llama.cpp loads them, and then asserts that a
    // tokenizer exists when a prompt is tokenized, aborting the process. A model that
    // cannot read a prompt has no use here.
    if model == b"no_vocab" || model == b"none" {
        return Err(format!(
            "tokenizer.ggml.model = {}: the model has no vocabulary, so it cannot read a prompt",
            shown(model)
        ));
    }
    let items = match h.get(TOKENS_KEY) {
        None => return Err(format!("{TOKENS_KEY} is missing")),
        Some(Kv {
            value:
                Value::Array {
                    elem: Ty::Str,
                    items: Some(items),
                    ..
                },
            ..
        }) => items,
        Some(kv) => {
            return Err(format!(
                "{TOKENS_KEY} has type {}, not an array of strings",
                match &kv.value {
                    Value::Array { elem, .. } => format!("array of {}", elem.name()),
                    _ => kv.ty.name().to_string(),
                }
            ))
        }
    };
    if items.is_empty() || items.len() > i32::MAX as usize {
        return Err(format!("{TOKENS_KEY} has {} tokens", items.len()));
    }
    let mut seen: HashMap<std::borrow::Cow<[u8]>, usize> = HashMap::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let Value::Str(s) = v else { continue };
        let text: std::borrow::Cow<[u8]> = if s.is_empty() {
            format!("[EMPTY_{i}]").into_bytes().into()
        } else {
            s.as_slice().into()
        };
        if let Some(first) = seen.insert(text, i) {
            return Err(format!(
                "{TOKENS_KEY} has {} twice (tokens {first} and {i})",
                shown(s)
            ));
        }
    }
    // At most i32::MAX (above).
    Ok(items.len() as u32)
}

/// Read and check `path`'s header.
pub(crate) fn check_file(path: &Path) -> Result<Hparams, String> {
    check(&read_header(path)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// A GGUF key-value entry.
    pub(crate) fn kv(key: &str, ty: Ty, payload: &[u8]) -> Vec<u8> {
        let mut b = (key.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(&ty.raw().to_le_bytes());
        b.extend_from_slice(payload);
        b
    }

    pub(crate) fn gguf_str(s: &[u8]) -> Vec<u8> {
        let mut b = (s.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(s);
        b
    }

    pub(crate) fn str_array(items: &[&[u8]]) -> Vec<u8> {
        let mut b = Ty::Str.raw().to_le_bytes().to_vec();
        b.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for s in items {
            b.extend(gguf_str(s));
        }
        b
    }

    pub(crate) fn u32_array(elem: Ty, items: &[u32]) -> Vec<u8> {
        let mut b = elem.raw().to_le_bytes().to_vec();
        b.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for v in items {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    pub(crate) fn file(kvs: &[Vec<u8>]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
        for kv in kvs {
            b.extend_from_slice(kv);
        }
        b
    }

    /// A small, well-formed llama header, with `edit` applied to its entries.
    fn llama(edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<u8> {
        of_arch("llama", edit)
    }

    /// The same header for the architecture `arch`.
    fn of_arch(arch: &str, edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<u8> {
        let u32v = |v: u32| v.to_le_bytes().to_vec();
        let k = |name: &str| format!("{arch}.{name}");
        let mut kvs = vec![
            kv("general.architecture", Ty::Str, &gguf_str(arch.as_bytes())),
            kv(&k("block_count"), Ty::U32, &u32v(4)),
            kv(&k("context_length"), Ty::U32, &u32v(2048)),
            kv(&k("embedding_length"), Ty::U32, &u32v(64)),
            kv(&k("attention.head_count"), Ty::U32, &u32v(8)),
            kv(&k("attention.head_count_kv"), Ty::U32, &u32v(2)),
            kv("tokenizer.ggml.model", Ty::Str, &gguf_str(b"gpt2")),
            kv(TOKENS_KEY, Ty::Array, &str_array(&[b"a", b"b", b"", b"c"])),
        ];
        edit(&mut kvs);
        file(&kvs)
    }

    fn checked(bytes: &[u8]) -> Result<Hparams, String> {
        check(&parse(Cursor::new(bytes), bytes.len() as u64)?)
    }

    fn set(kvs: &mut [Vec<u8>], key: &str, entry: Vec<u8>) {
        let prefix = kv(key, Ty::U8, &[]);
        let at = kvs
            .iter()
            .position(|e| e.starts_with(&prefix[..prefix.len() - 4]))
            .unwrap();
        kvs[at] = entry;
    }

    #[test]
    fn a_good_header_gives_the_kv_cache_size() {
        let h = checked(&llama(|_| {})).unwrap();
        assert_eq!((h.arch.as_str(), h.n_layer, h.n_embd), ("llama", 4, 64));
        // 4 layers × 2 KV heads × (8 + 8) dims × 2 bytes × 1000 tokens
        assert_eq!(h.kv_cache_bytes(1000), Some(4 * 2 * 16 * 2 * 1000));
    }

    #[test]
    fn a_kv_cache_too_big_for_64_bits_is_none() {
        let h = Hparams {
            arch: "llama".into(),
            n_layer: 2,
            n_embd: 64,
            n_ctx_train: 2048,
            n_vocab: 4,
            kv_per_layer: vec![1 << 40, 1 << 40],
            quantization: None,
            layer_bytes: vec![0, 0],
            output_bytes: 0,
            pooling: None,
        };
        assert_eq!(h.kv_cache_bytes(1 << 21), Some(1 << 63));
        assert_eq!(h.kv_cache_bytes(1 << 22), None);
        let sum_overflows = Hparams {
            kv_per_layer: vec![u64::MAX, 1],
            ..h
        };
        assert_eq!(sum_overflows.kv_cache_bytes(1), None);
    }

    #[test]
    fn an_unknown_pooling_type_is_an_error() {
        for (key, value, ok) in [
            ("llama.pooling_type", 1u32, true),
            ("llama.pooling_type", 4, true),
            ("llama.pooling_type", 5, false),
            ("llama.classifier.pooling_type", 9, false),
        ] {
            let bytes = llama(|kvs| kvs.push(kv(key, Ty::U32, &value.to_le_bytes())));
            match checked(&bytes) {
                Ok(h) if ok => {
                    if key == "llama.pooling_type" {
                        assert_eq!(h.pooling, Some(value));
                    }
                }
                Err(e) if !ok => assert!(e.contains(&format!("{key} = {value}")), "{e}"),
                other => panic!("{key} = {value}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_crafted_abort_is_an_error() {
        // The shape of the 240-byte file that aborted llama.cpp: no tensors, no layers.
        let bytes = llama(|kvs| {
            set(
                kvs,
                "llama.block_count",
                kv("llama.block_count", Ty::U32, &0u32.to_le_bytes()),
            );
        });
        let e = checked(&bytes).unwrap_err();
        assert!(e.contains("llama.block_count = 0"), "{e}");
        let bytes = llama(|kvs| {
            set(
                kvs,
                "llama.block_count",
                kv("llama.block_count", Ty::U32, &513u32.to_le_bytes()),
            );
        });
        assert!(checked(&bytes).unwrap_err().contains("= 513"));
    }

    #[test]
    // A table of cases, one after another.
    #[allow(clippy::too_many_lines)]
    fn each_asserted_value_is_checked() {
        let u = |v: u32| v.to_le_bytes().to_vec();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "llama.embedding_length",
                kv("llama.embedding_length", Ty::U32, &u(0)),
                "embedding_length = 0",
            ),
            (
                "llama.embedding_length",
                kv("llama.embedding_length", Ty::U64, &1u64.to_le_bytes()),
                "has type u64",
            ),
            (
                "llama.context_length",
                kv("llama.context_length", Ty::U32, &u(u32::MAX)),
                "context_length = 4294967295",
            ),
            (
                "llama.attention.head_count",
                kv("llama.attention.head_count", Ty::U32, &u(0)),
                "head_count = 0",
            ),
            (
                "llama.attention.head_count",
                kv("llama.attention.head_count", Ty::U32, &u(6)),
                "not a multiple of llama.attention.head_count = 6",
            ),
            (
                "llama.attention.head_count_kv",
                kv("llama.attention.head_count_kv", Ty::U32, &u(0)),
                "head_count_kv = 0",
            ),
            (
                "llama.attention.head_count_kv",
                kv("llama.attention.head_count_kv", Ty::U32, &u(16)),
                "more than",
            ),
            (
                "llama.attention.head_count_kv",
                kv("llama.attention.head_count_kv", Ty::U32, &u(3)),
                "not a multiple of llama.attention.head_count_kv = 3",
            ),
            (
                "llama.attention.head_count",
                kv(
                    "llama.attention.head_count",
                    Ty::Array,
                    &u32_array(Ty::U32, &[8, 8, 8]),
                ),
                "has 3 values",
            ),
            (
                "llama.attention.head_count",
                kv(
                    "llama.attention.head_count",
                    Ty::Array,
                    &u32_array(Ty::F32, &[8, 8, 8, 8]),
                ),
                "array of f32",
            ),
            (
                "llama.attention.head_count",
                kv(
                    "llama.attention.head_count",
                    Ty::Array,
                    &u32_array(Ty::I32, &[8, 8, u32::MAX, 8]),
                ),
                "4294967295 (layer 2)",
            ),
            (
                "general.architecture",
                kv("general.architecture", Ty::Str, &gguf_str(b"llama9")),
                "\"llama9\"",
            ),
            (
                "general.architecture",
                kv("general.architecture", Ty::U32, &u(1)),
                "not string",
            ),
            (
                "general.architecture",
                kv("general.architecture", Ty::Str, &gguf_str(b"clip")),
                "mmproj",
            ),
            (
                TOKENS_KEY,
                kv(TOKENS_KEY, Ty::Array, &str_array(&[b"a", b"b", b"a"])),
                "\"a\" twice (tokens 0 and 2)",
            ),
            (
                TOKENS_KEY,
                kv(
                    TOKENS_KEY,
                    Ty::Array,
                    &str_array(&[b"a", b"", b"[EMPTY_1]"]),
                ),
                "twice",
            ),
            (
                TOKENS_KEY,
                kv(TOKENS_KEY, Ty::Array, &u32_array(Ty::U32, &[1])),
                "array of u32",
            ),
        ];
        for (key, entry, want) in cases {
            let bytes = llama(|kvs| set(kvs, key, entry));
            let e = checked(&bytes).expect_err(want);
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        let added: Vec<(Vec<u8>, &str)> = vec![
            (
                kv("llama.nextn_predict_layers", Ty::U32, &u(5)),
                "nextn_predict_layers = 5",
            ),
            (kv("llama.expert_count", Ty::U32, &u(2000)), "at most 1024"),
            (
                kv("llama.expert_count", Ty::U32, &u(8)),
                "expert_used_count is 0",
            ),
            (
                kv("llama.expert_used_count", Ty::U32, &u(2)),
                "more than llama.expert_count = 0",
            ),
            (
                kv("llama.rope.scaling.type", Ty::Str, &gguf_str(b"bogus")),
                "\"bogus\"",
            ),
            (
                kv("llama.attention.key_length", Ty::U32, &u(0)),
                "key_length = 0",
            ),
        ];
        for m in [&b"none"[..], b"no_vocab"] {
            let bytes = llama(|kvs| {
                set(
                    kvs,
                    "tokenizer.ggml.model",
                    kv("tokenizer.ggml.model", Ty::Str, &gguf_str(m)),
                );
            });
            let e = checked(&bytes).unwrap_err();
            assert!(e.contains("no vocabulary"), "{e}");
        }
        for (entry, want) in added {
            let bytes = llama(|kvs| kvs.push(entry));
            let e = checked(&bytes).expect_err(want);
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        // Per-layer arrays llama.cpp accepts are accepted: a layer without attention
        // where the architecture has such layers (jamba's are recurrent), not in
        // llama, whose graph then fails a ggml assert at the first token.
        let zero_kv_layer = |arch: &str| {
            of_arch(arch, |kvs| {
                let key = format!("{arch}.attention.head_count_kv");
                let e = kv(&key, Ty::Array, &u32_array(Ty::I32, &[2, 0, 4, 8]));
                set(kvs, &key, e);
                kvs.push(kv(&format!("{arch}.attention.key_length"), Ty::U32, &u(16)));
                kvs.push(kv(
                    &format!("{arch}.attention.value_length"),
                    Ty::U32,
                    &u(16),
                ));
            })
        };
        let h = checked(&zero_kv_layer("jamba")).unwrap();
        assert_eq!(h.kv_per_layer, vec![64, 0, 128, 256]);
        let e = checked(&zero_kv_layer("llama")).unwrap_err();
        assert!(
            e.contains("llama.attention.head_count_kv = 0 (layer 1)"),
            "{e}"
        );
    }

    #[test]
    fn float_hyperparameters_are_range_checked() {
        let f = |v: f32| v.to_le_bytes().to_vec();
        let eps = "llama.attention.layer_norm_rms_epsilon";
        let base = "llama.rope.freq_base";
        let bad: Vec<(Vec<u8>, &str)> = vec![
            (kv(eps, Ty::F32, &f(-1.0)), "layer_norm_rms_epsilon = -1"),
            (
                kv(eps, Ty::F32, &f(f32::NAN)),
                "layer_norm_rms_epsilon = NaN",
            ),
            (kv(eps, Ty::F32, &f(0.0)), "epsilon = 0"),
            (kv(eps, Ty::F32, &f(f32::INFINITY)), "epsilon = inf"),
            (kv(eps, Ty::F32, &f(2.0)), "at most 1"),
            (
                kv(eps, Ty::F64, &f64::NAN.to_le_bytes()),
                "layer_norm_rms_epsilon = NaN",
            ),
            (
                kv("llama.attention.layer_norm_epsilon", Ty::F32, &f(-1e-5)),
                "layer_norm_epsilon = -0.00001",
            ),
            (kv(base, Ty::F32, &f(f32::NAN)), "freq_base = NaN"),
            (kv(base, Ty::F32, &f(0.0)), "freq_base = 0"),
            (kv(base, Ty::F32, &f(-1.0)), "freq_base = -1"),
            (kv(base, Ty::F32, &f(f32::INFINITY)), "freq_base = inf"),
            (
                kv("llama.rope.freq_base_swa", Ty::F32, &f(0.0)),
                "freq_base_swa = 0",
            ),
            (
                kv("llama.rope.scaling.factor", Ty::F32, &f(-2.0)),
                "scaling.factor = -2",
            ),
            (
                kv("llama.rope.scale_linear", Ty::F32, &f(f32::NAN)),
                "scale_linear = NaN",
            ),
            (
                kv("llama.rope.scaling.attn_factor", Ty::F32, &f(0.0)),
                "attn_factor = 0",
            ),
            (
                kv("llama.logit_scale", Ty::F32, &f(f32::NAN)),
                "logit_scale = NaN",
            ),
            (
                kv("llama.rope.dimension_count", Ty::U32, &7u32.to_le_bytes()),
                "dimension_count = 7",
            ),
            (
                kv("llama.rope.dimension_count", Ty::U32, &10u32.to_le_bytes()),
                "at most the head size 8",
            ),
        ];
        for (entry, want) in bad {
            let e = checked(&llama(|kvs| kvs.push(entry))).expect_err(want);
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        // Values of released models pass; llama.cpp reads a rope scaling factor of 0 as
        // none, and NaN only matters as a value: another key's NaN name is not refused.
        let good: Vec<Vec<u8>> = vec![
            kv(eps, Ty::F32, &f(1e-5)),
            kv("llama.attention.layer_norm_epsilon", Ty::F32, &f(1e-12)),
            kv(base, Ty::F32, &f(1e6)),
            kv("llama.rope.scaling.factor", Ty::F32, &f(0.0)),
            kv("llama.rope.scaling.yarn_ext_factor", Ty::F32, &f(-1.0)),
            kv("llama.rope.dimension_count", Ty::U32, &8u32.to_le_bytes()),
            kv("general.nan", Ty::F32, &f(f32::NAN)),
        ];
        checked(&llama(|kvs| kvs.extend(good))).unwrap();
    }

    /// A header of `kvs` followed by tensor infos of (name, dims, ggml type).
    fn with_tensors(kvs: &[Vec<u8>], tensors: &[(&str, &[i64], u32)]) -> Vec<u8> {
        let mut b = file(kvs);
        b[8..16].copy_from_slice(&(tensors.len() as u64).to_le_bytes());
        for (name, dims, ty) in tensors {
            b.extend(gguf_str(name.as_bytes()));
            b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in *dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&0u64.to_le_bytes());
        }
        b
    }

    #[test]
    fn the_quantization_comes_from_the_tensors() {
        let quant = |file_type: Option<u32>, tensors: &[(&str, &[i64], u32)]| {
            let kvs: Vec<Vec<u8>> = file_type
                .map(|t| kv("general.file_type", Ty::U32, &t.to_le_bytes()))
                .into_iter()
                .collect();
            let bytes = with_tensors(&kvs, tensors);
            quantization(&parse(Cursor::new(&bytes), bytes.len() as u64).unwrap())
        };
        // A Q4_1 file: Q4_1 layers, a Q6_K output with more elements than they have,
        // f32 norms.
        let q4_1: &[(&str, &[i64], u32)] = &[
            ("blk.0.attn_q.weight", &[576, 576], 3),
            ("blk.0.ffn_up.weight", &[576, 1536], 3),
            ("output.weight", &[576, 4096], 14),
            ("blk.0.attn_norm.weight", &[576], 0),
        ];
        assert_eq!(quant(Some(3), q4_1).as_deref(), Some("Q4_1"));
        assert_eq!(quant(None, q4_1).as_deref(), Some("Q4_1"));
        // A file type its weights do not hold (Q4_K_M: Q4_K weights) is not believed.
        assert_eq!(quant(Some(15), q4_1).as_deref(), Some("Q4_1"));
        assert_eq!(quant(Some(999), q4_1).as_deref(), Some("Q4_1"));
        let q4_k_m: &[(&str, &[i64], u32)] = &[
            ("blk.0.attn_q.weight", &[576, 576], 12),
            ("blk.0.ffn_down.weight", &[1536, 576], 14),
            ("blk.0.ffn_up.weight", &[576, 1536], 12),
        ];
        assert_eq!(quant(Some(15), q4_k_m).as_deref(), Some("Q4_K_M"));
        assert_eq!(quant(None, q4_k_m).as_deref(), Some("Q4_K"));
        assert_eq!(quant(Some(3), &[]), None);
    }

    #[test]
    fn broken_containers_are_errors_not_allocations() {
        let good = llama(|_| {});
        for len in 0..good.len() {
            assert!(checked(&good[..len]).is_err(), "truncated at {len}");
        }
        let mut huge_count = good.clone();
        huge_count[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(checked(&huge_count)
            .unwrap_err()
            .contains("kv_count = 18446744073709551615"));
        let mut huge_array = file(&[kv("x", Ty::Array, &u32_array(Ty::U64, &[]))]);
        let at = huge_array.len() - 8;
        huge_array[at..].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
        assert!(checked(&huge_array).unwrap_err().contains("claims"));
        let mut version = good.clone();
        version[4] = 1;
        assert!(checked(&version).unwrap_err().contains("version = 1"));
        assert!(checked(b"GGML\x03\0\0\0").unwrap_err().contains("magic"));
    }

    /// `KNOWN_ARCHITECTURES` is `LLM_ARCH_NAMES` of the llama.cpp that Cargo.lock pins,
    /// read from cargo's registry copy of llama-cpp-sys-2.
    #[test]
    fn known_architectures_match_llama_cpp() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
            .expect("Cargo.lock");
        let version = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"llama-cpp-sys-2\""))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .expect("llama-cpp-sys-2 in Cargo.lock");
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
            .expect("CARGO_HOME or HOME");
        let registry = cargo_home.join("registry/src");
        let source = std::fs::read_dir(&registry)
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| {
                d.path().join(format!(
                    "llama-cpp-sys-2-{version}/llama.cpp/src/llama-arch.cpp"
                ))
            })
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!(
                    "llama-arch.cpp of llama-cpp-sys-2 {version} is not under {}",
                    registry.display()
                )
            });
        let text = std::fs::read_to_string(&source).unwrap();
        let table = text
            .split("LLM_ARCH_NAMES = {")
            .nth(1)
            .and_then(|t| t.split("\n};").next())
            .expect("LLM_ARCH_NAMES");
        let names: Vec<&str> = table
            .lines()
            .filter_map(|l| l.split('"').nth(1))
            .filter(|n| *n != "clip" && *n != "(unknown)")
            .collect();
        assert_eq!(
            names,
            KNOWN_ARCHITECTURES,
            "llama.cpp's architectures changed: update KNOWN_ARCHITECTURES and re-read \
             load_hparams for new asserts ({})",
            source.display()
        );
    }
}
