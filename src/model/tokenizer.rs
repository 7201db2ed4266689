//! Tokenizer loading: `tokenizer.json`, else `vocab.txt` (WordPiece) or `vocab.json` +
//! `merges.txt` (byte-level BPE).

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

use super::config::{read_small_text, MAX_CONFIG_BYTES};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::config::Family;

/// One tokenized text: ids with byte offsets into the text (special tokens have `special` set).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
    pub special: Vec<bool>,
}

pub struct TextTokenizer {
    inner: Tokenizer,
    mask_id: u32,
    mask_token: String,
    /// Largest id the tokenizer can produce + 1.
    vocab_size: usize,
    pub source: String,
}

fn tok_err(file: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{}: {e}", file.display())
}

/// The largest tokenizer file read (`tokenizer.json`, a vocabulary, merges): the largest
/// published ones are about 20 MB.
pub const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

fn check_tokenizer_size(path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > MAX_TOKENIZER_BYTES {
        bail!(
            "{} is {len} bytes, larger than the limit of {MAX_TOKENIZER_BYTES} bytes for a tokenizer file",
            path.display()
        );
    }
    Ok(())
}

fn configured_mask_token(dir: &Path) -> Option<String> {
    let text = read_small_text(&dir.join("tokenizer_config.json"), MAX_CONFIG_BYTES).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    match v.get("mask_token")? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => other.get("content")?.as_str().map(str::to_string),
    }
}

fn lowercase_flag(dir: &Path) -> bool {
    read_small_text(&dir.join("tokenizer_config.json"), MAX_CONFIG_BYTES)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
        .unwrap_or(true)
}

impl TextTokenizer {
    pub fn load(dir: &Path, family: Family) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let (mut inner, source) = if json.is_file() {
            check_tokenizer_size(&json)?;
            (
                Tokenizer::from_file(&json).map_err(|e| tok_err(&json, e))?,
                json,
            )
        } else if family == Family::Roberta {
            let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
            for f in [&vocab, &merges] {
                if !f.is_file() {
                    bail!(
                        "{}: no tokenizer (expected tokenizer.json, or vocab.json + merges.txt); missing {}",
                        dir.display(),
                        f.display()
                    );
                }
            }
            Self::byte_level_bpe(
                &vocab,
                &merges,
                configured_mask_token(dir).as_deref().unwrap_or("<mask>"),
            )?
        } else {
            let vocab = dir.join("vocab.txt");
            if !vocab.is_file() {
                bail!(
                    "{}: no tokenizer (expected tokenizer.json or vocab.txt); missing {}",
                    dir.display(),
                    vocab.display()
                );
            }
            Self::wordpiece(&vocab, lowercase_flag(dir))?
        };
        inner
            .with_truncation(None)
            .map_err(|e| tok_err(&source, e))?
            .with_padding(None);
        let candidates: Vec<String> = configured_mask_token(dir)
            .into_iter()
            .chain(["[MASK]".to_string(), "<mask>".to_string()])
            .collect();
        let (mask_token, mask_id) = candidates
            .iter()
            .find_map(|t| inner.token_to_id(t).map(|id| (t.clone(), id)))
            .with_context(|| {
                format!(
                    "{}: the tokenizer has no mask token ([MASK] or <mask>)",
                    source.display()
                )
            })?;
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .map(|&id| id as usize + 1)
            .max()
            .unwrap_or(0);
        Ok(TextTokenizer {
            inner,
            mask_id,
            mask_token,
            vocab_size,
            source: source.display().to_string(),
        })
    }

    fn wordpiece(vocab: &Path, lowercase: bool) -> Result<(Tokenizer, std::path::PathBuf)> {
        check_tokenizer_size(vocab)?;
        let wp = WordPiece::from_file(&vocab.to_string_lossy())
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| tok_err(vocab, e))?;
        let mut t = Tokenizer::new(wp);
        let id = |s: &str| {
            t.token_to_id(s)
                .ok_or_else(|| anyhow!("{}: vocabulary has no {s} token", vocab.display()))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        t.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .map_err(|e| anyhow!("cannot set up the tokenizer: {e}"))?;
        t.with_pre_tokenizer(Some(BertPreTokenizer));
        t.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        t.with_decoder(Some(WordPieceDecoder::default()));
        let specials: Vec<AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .filter(|s| t.token_to_id(s).is_some())
            .map(|s| AddedToken::from(s.to_string(), true))
            .collect();
        t.add_special_tokens(specials)
            .map_err(|e| anyhow!("cannot add the special tokens: {e}"))?;
        Ok((t, vocab.to_path_buf()))
    }

    fn byte_level_bpe(
        vocab: &Path,
        merges: &Path,
        mask: &str,
    ) -> Result<(Tokenizer, std::path::PathBuf)> {
        check_tokenizer_size(vocab)?;
        check_tokenizer_size(merges)?;
        let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
            .build()
            .map_err(|e| tok_err(vocab, e))?;
        let mut t = Tokenizer::new(bpe);
        let id = |s: &str| {
            t.token_to_id(s)
                .ok_or_else(|| anyhow!("{}: vocabulary has no {s} token", vocab.display()))
        };
        let (cls, sep) = (id("<s>")?, id("</s>")?);
        t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        t.with_post_processor(Some(
            RobertaProcessing::new(("</s>".into(), sep), ("<s>".into(), cls))
                .trim_offsets(true)
                .add_prefix_space(false),
        ));
        t.with_decoder(Some(ByteLevelDecoder::default()));
        let mut specials: Vec<AddedToken> = ["<s>", "<pad>", "</s>", "<unk>"]
            .iter()
            .filter(|s| t.token_to_id(s).is_some())
            .map(|s| AddedToken::from(s.to_string(), true))
            .collect();
        // Like HF's slow tokenizer, a mask token missing from vocab.json is added after it.
        specials.push(AddedToken::from(mask.to_string(), true).lstrip(true));
        t.add_special_tokens(specials)
            .map_err(|e| anyhow!("cannot add the special tokens: {e}"))?;
        Ok((t, vocab.to_path_buf()))
    }

    /// Tokenizes with the model's special tokens; offsets are byte offsets into `text`.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let e = self
            .inner
            .encode(text, true)
            .map_err(|e| anyhow!("cannot tokenize {text:?}: {e}"))?;
        Ok(Encoded {
            ids: e.get_ids().to_vec(),
            offsets: e.get_offsets().to_vec(),
            special: e
                .get_special_tokens_mask()
                .iter()
                .map(|&m| m == 1)
                .collect(),
        })
    }

    pub fn mask_id(&self) -> u32 {
        self.mask_id
    }

    /// Positions of the mask token in `enc`.
    pub fn mask_positions(&self, enc: &Encoded) -> Vec<usize> {
        enc.ids
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == self.mask_id)
            .map(|(i, _)| i)
            .collect()
    }

    pub fn mask_token(&self) -> &str {
        &self.mask_token
    }

    /// Largest token id this tokenizer can produce, plus one.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The token's string (`##` pieces and byte-level `Ġ` kept as they are in the vocabulary).
    pub fn token(&self, id: u32) -> String {
        self.inner
            .id_to_token(id)
            .unwrap_or_else(|| format!("<{id}>"))
    }

    /// A readable form of one token (decoded, trimmed), for display.
    pub fn display_token(&self, id: u32) -> String {
        let raw = self.token(id);
        if raw.starts_with("##") || raw.starts_with('[') || raw.starts_with('<') {
            return raw;
        }
        match self.inner.decode(&[id], false) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => raw,
        }
    }
}
