//! A transformer encoder with an MLM head for BERT, RoBERTa and DistilBERT checkpoints, written
//! for PELT: callers may replace the word embedding at any position by a vector of their own
//! ("injection") and ask for the MLM head's transform output and/or vocabulary logits at chosen
//! positions only. The last layer is evaluated for those positions alone.
//!
//! Two paths run the layers before the last: the fused f32 CPU kernels on packed rows (this
//! module and `cpu/kernels.rs`), and the generic path on right-padded batches with an additive
//! mask (accelerators, bf16/f16, or the CPU with the kernels off). Where the dense weights are
//! plain tensors, the generic path runs candle-transformers' BERT layers
//! ([`candle_transformers::models::bert::BertEncoder`]) over views of this encoder's tensors.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{LayerNorm, Module, VarBuilder};
use candle_transformers::models::bert as ct;
use std::collections::HashMap;

use super::config::{Activation, Config, Family};
use super::cpu::kernels;
use super::weights::{Linear, Matmul, Weights};

/// Replace the word embedding of `seqs[row][position]` by `vector` (length = hidden size).
/// Position and token-type embeddings and the embedding LayerNorm still apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    pub row: usize,
    pub position: usize,
    pub vector: Vec<f32>,
}

/// Results at the requested positions, in request order, as flat row-major f32 arrays.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    pub hidden: usize,
    pub vocab: usize,
    /// `[n, hidden]`: the MLM head's transform output (the PELT representation).
    pub transform: Vec<f32>,
    /// `[n, vocab]` when logits were requested.
    pub logits: Option<Vec<f32>>,
}

impl EncoderOutput {
    pub fn len(&self) -> usize {
        self.transform.len() / self.hidden.max(1)
    }
    pub fn is_empty(&self) -> bool {
        self.transform.is_empty()
    }
    pub fn transform_row(&self, i: usize) -> &[f32] {
        &self.transform[i * self.hidden..(i + 1) * self.hidden]
    }
    pub fn logits_row(&self, i: usize) -> Option<&[f32]> {
        self.logits
            .as_ref()
            .map(|l| &l[i * self.vocab..(i + 1) * self.vocab])
    }
}

/// The attention input projections of a layer: fused Q/K/V for layers that run on every
/// token, separate Q and fused K/V for the last layer (only the mask rows need queries).
enum Projections {
    Fused(Linear),
    Split { q: Linear, kv: Linear },
}

/// Where the rows of a batch are: row r's `lens[r]` tokens start at `starts[r]`, in `rows`
/// token rows in all; `packed` rows follow one another, others are padded to `seq_len`, the
/// longest. `mask` (`[b, 1, 1, seq_len]`) is present when rows are padded, for the generic
/// path.
struct BatchLayout {
    lens: Vec<usize>,
    starts: Vec<usize>,
    seq_len: usize,
    rows: usize,
    packed: bool,
    mask: Option<Tensor>,
}

impl BatchLayout {
    /// The token rows row `r` takes: its length when packed, `seq_len` when padded.
    fn span(&self, r: usize) -> usize {
        if self.packed {
            self.lens[r]
        } else {
            self.seq_len
        }
    }
}

struct Layer {
    proj: Projections,
    attn_out: Linear,
    attn_ln: LayerNorm,
    inter: Linear,
    out: Linear,
    out_ln: LayerNorm,
    /// `[3, hidden]`: bias of `attn_out`, gamma and beta of `attn_ln` (for the fused kernel).
    attn_post: Tensor,
    /// The same for `out` and `out_ln`.
    out_post: Tensor,
}

/// Stacks a dense layer's bias with the LayerNorm that follows it (`[3, n]`).
fn post_params(dense: &Linear, ln: &LayerNorm) -> candle_core::Result<Tensor> {
    let beta = ln
        .bias()
        .ok_or_else(|| candle_core::Error::Msg("LayerNorm without bias".into()))?;
    Tensor::stack(&[&dense.b, ln.weight(), beta], 0)
}

pub struct Encoder {
    cfg: Config,
    device: Device,
    dtype: DType,
    word: Tensor,
    position: Tensor,
    token_type0: Option<Tensor>,
    emb_ln: LayerNorm,
    /// `[3, h]`: the token-type-0 embedding (zeros where the family has none), then the
    /// embedding LayerNorm's gamma and beta: the sum of the embeddings and its LayerNorm in
    /// one pass of the fused kernels.
    emb_post: Tensor,
    layers: Vec<Layer>,
    /// candle-transformers' layers over the same tensors as `layers[..n - 1]` (views, no
    /// copies), for the generic path; `None` where the dense weights are packed for the sgemm.
    generic: Option<ct::BertEncoder>,
    head_dense: Linear,
    head_act: Activation,
    head_ln: LayerNorm,
    decoder: Tensor,
    decoder_bias: Tensor,
    cpu_kernels: bool,
    matmul: Matmul,
    decoder_packed: std::sync::OnceLock<Linear>,
}

/// Adds the tensors of layer `li` under candle-transformers' BERT names: views of the fused
/// Q/K/V projection and the other tensors themselves (shared, not copied). `false` when a
/// weight is packed for the sgemm (no plain tensor to share).
fn add_ct_layer(
    map: &mut HashMap<String, Tensor>,
    li: usize,
    h: usize,
    qkv: &Linear,
    [ao, it, ot]: [&Linear; 3],
    [aln, oln]: [&LayerNorm; 2],
) -> candle_core::Result<bool> {
    let p = format!("layer.{li}");
    let Ok(w) = qkv.weight() else {
        return Ok(false);
    };
    for (j, name) in ["query", "key", "value"].iter().enumerate() {
        let n = format!("{p}.attention.self.{name}");
        map.insert(format!("{n}.weight"), w.narrow(0, j * h, h)?);
        map.insert(format!("{n}.bias"), qkv.b.narrow(0, j * h, h)?);
    }
    for (name, lin) in [
        ("attention.output.dense", ao),
        ("intermediate.dense", it),
        ("output.dense", ot),
    ] {
        let Ok(w) = lin.weight() else {
            return Ok(false);
        };
        map.insert(format!("{p}.{name}.weight"), w);
        map.insert(format!("{p}.{name}.bias"), lin.b.clone());
    }
    for (name, ln) in [
        ("attention.output.LayerNorm", aln),
        ("output.LayerNorm", oln),
    ] {
        map.insert(format!("{p}.{name}.weight"), ln.weight().clone());
        if let Some(b) = ln.bias() {
            map.insert(format!("{p}.{name}.bias"), b.clone());
        }
    }
    Ok(true)
}

/// The configuration candle-transformers' BERT layers need for layers 0..n-2 of `cfg`.
fn ct_config(cfg: &Config) -> ct::Config {
    ct::Config {
        vocab_size: cfg.vocab_size,
        hidden_size: cfg.hidden_size,
        num_hidden_layers: cfg.num_layers - 1,
        num_attention_heads: cfg.num_heads,
        intermediate_size: cfg.intermediate_size,
        hidden_act: match cfg.activation {
            Activation::Gelu => ct::HiddenAct::Gelu,
            Activation::GeluTanh => ct::HiddenAct::GeluApproximate,
            Activation::Relu => ct::HiddenAct::Relu,
        },
        hidden_dropout_prob: 0.0,
        max_position_embeddings: cfg.max_position_embeddings,
        type_vocab_size: cfg.type_vocab_size.max(1),
        initializer_range: 0.02,
        layer_norm_eps: cfg.layer_norm_eps,
        pad_token_id: cfg.pad_token_id as usize,
        position_embedding_type: ct::PositionEmbeddingType::Absolute,
        use_cache: false,
        classifier_dropout: None,
        model_type: None,
    }
}

fn activate(a: Activation, x: &Tensor, cpu_kernels: bool) -> candle_core::Result<Tensor> {
    match a {
        Activation::Gelu if cpu_kernels => kernels::gelu_erf(x),
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
}

impl Encoder {
    pub fn load(
        w: &Weights,
        cfg: &Config,
        device: &Device,
        dtype: DType,
        matmul: Matmul,
    ) -> Result<Self> {
        let (h, v, i) = (cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size);
        let eps = cfg.layer_norm_eps;
        let fam = cfg.family.name();
        let emb = format!("{fam}.embeddings");
        let word = w.get(&format!("{emb}.word_embeddings.weight"), &[v, h])?;
        let position = w.get(
            &format!("{emb}.position_embeddings.weight"),
            &[cfg.max_position_embeddings, h],
        )?;
        let token_type0 = if cfg.family == Family::DistilBert {
            None
        } else {
            let t = w.get(
                &format!("{emb}.token_type_embeddings.weight"),
                &[cfg.type_vocab_size, h],
            )?;
            Some(t.get(0)?.unsqueeze(0)?)
        };
        let emb_ln = w.layer_norm(&format!("{emb}.LayerNorm"), h, eps)?;
        let emb_post = {
            let tt = match &token_type0 {
                Some(t) => t.squeeze(0)?,
                None => Tensor::zeros(h, dtype, device)?,
            };
            let beta = emb_ln.bias().ok_or_else(|| {
                candle_core::Error::Msg("the embedding LayerNorm has no bias".into())
            })?;
            Tensor::stack(&[&tt, emb_ln.weight(), beta], 0)?
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        // The tensors of layers 0..n-2 under candle-transformers' BERT names, for the generic
        // path (the same layer for all three families); dropped when a weight is packed.
        let mut ct_tensors: Option<HashMap<String, Tensor>> = Some(HashMap::new());
        for li in 0..cfg.num_layers {
            let (q, k, vv, ao, aln, it, ot, oln) = if cfg.family == Family::DistilBert {
                let p = format!("distilbert.transformer.layer.{li}");
                (
                    w.linear(&format!("{p}.attention.q_lin"), h, h)?,
                    w.linear(&format!("{p}.attention.k_lin"), h, h)?,
                    w.linear(&format!("{p}.attention.v_lin"), h, h)?,
                    w.linear(&format!("{p}.attention.out_lin"), h, h)?,
                    w.layer_norm(&format!("{p}.sa_layer_norm"), h, eps)?,
                    w.linear(&format!("{p}.ffn.lin1"), h, i)?,
                    w.linear(&format!("{p}.ffn.lin2"), i, h)?,
                    w.layer_norm(&format!("{p}.output_layer_norm"), h, eps)?,
                )
            } else {
                let p = format!("{fam}.encoder.layer.{li}");
                (
                    w.linear(&format!("{p}.attention.self.query"), h, h)?,
                    w.linear(&format!("{p}.attention.self.key"), h, h)?,
                    w.linear(&format!("{p}.attention.self.value"), h, h)?,
                    w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                    w.layer_norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                    w.linear(&format!("{p}.intermediate.dense"), h, i)?,
                    w.linear(&format!("{p}.output.dense"), i, h)?,
                    w.layer_norm(&format!("{p}.output.LayerNorm"), h, eps)?,
                )
            };
            let proj = if li + 1 == cfg.num_layers {
                Projections::Split {
                    q: q.pack(matmul)?,
                    kv: Linear::concat(&[k, vv])?.pack(matmul)?,
                }
            } else {
                Projections::Fused(Linear::concat(&[q, k, vv])?.pack(matmul)?)
            };
            let (ao, it, ot) = (ao.pack(matmul)?, it.pack(matmul)?, ot.pack(matmul)?);
            if let (Projections::Fused(qkv), Some(map)) = (&proj, ct_tensors.as_mut()) {
                if !add_ct_layer(map, li, h, qkv, [&ao, &it, &ot], [&aln, &oln])? {
                    ct_tensors = None;
                }
            }
            layers.push(Layer {
                proj,
                attn_post: post_params(&ao, &aln)?,
                out_post: post_params(&ot, &oln)?,
                attn_out: ao,
                attn_ln: aln,
                inter: it,
                out: ot,
                out_ln: oln,
            });
        }
        let (head_dense, head_act, head_ln, dec_names, bias_names): (_, _, _, &[&str], &[&str]) =
            match cfg.family {
                Family::Bert => (
                    w.linear("cls.predictions.transform.dense", h, h)?,
                    cfg.activation,
                    w.layer_norm("cls.predictions.transform.LayerNorm", h, eps)?,
                    &["cls.predictions.decoder.weight"],
                    &["cls.predictions.bias", "cls.predictions.decoder.bias"],
                ),
                Family::Roberta => (
                    w.linear("lm_head.dense", h, h)?,
                    Activation::Gelu,
                    w.layer_norm("lm_head.layer_norm", h, eps)?,
                    &["lm_head.decoder.weight"],
                    &["lm_head.bias", "lm_head.decoder.bias"],
                ),
                Family::DistilBert => (
                    w.linear("vocab_transform", h, h)?,
                    cfg.activation,
                    w.layer_norm("vocab_layer_norm", h, eps)?,
                    &["vocab_projector.weight"],
                    &["vocab_projector.bias"],
                ),
            };
        // Tied decoders are often left out of checkpoints: fall back to the word embeddings.
        let decoder = if w.contains(dec_names[0]) {
            w.get(dec_names[0], &[v, h])?
        } else {
            word.clone()
        };
        let decoder_bias = w.get_any(bias_names, &[v])?;
        let generic = match ct_tensors {
            Some(map) => {
                let vb = VarBuilder::from_tensors(map, dtype, device);
                Some(ct::BertEncoder::load(vb, &ct_config(cfg))?)
            }
            None => None,
        };
        Ok(Encoder {
            cfg: cfg.clone(),
            device: device.clone(),
            dtype,
            word,
            position,
            token_type0,
            emb_ln,
            emb_post,
            layers,
            generic,
            head_dense: head_dense.pack(matmul)?,
            head_act,
            head_ln,
            decoder,
            decoder_bias,
            cpu_kernels: true,
            matmul: matmul.on(device, dtype),
            decoder_packed: std::sync::OnceLock::new(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Turns the fused f32 CPU kernels (attention, gelu) off or on; off, the encoder runs
    /// candle's generic tensor ops, the path accelerators take.
    pub fn set_cpu_kernels(&mut self, on: bool) {
        self.cpu_kernels = on;
    }

    /// Whether the generic path runs candle-transformers' layers (the dense weights are
    /// plain tensors, not packed for the CPU sgemm).
    pub fn generic_layers_from_candle_transformers(&self) -> bool {
        self.generic.is_some()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// What the dense layers multiply with (meaningful for f32 models on the CPU).
    pub fn matmul(&self) -> Matmul {
        self.matmul
    }

    /// Whether batches run packed (rows one after another, no padding): with the fused f32
    /// CPU kernels. Otherwise rows are padded to the longest.
    pub fn packs_tokens(&self) -> bool {
        self.cpu_kernels && self.device.is_cpu() && self.dtype == DType::F32
    }

    /// The input word-embedding matrix `[vocab, hidden]` as f32 on the CPU.
    pub fn word_embeddings(&self) -> Result<Vec<f32>> {
        Ok(self
            .word
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1()?)
    }

    /// Runs the encoder on right-padded `seqs` and returns results at `positions` (`(row, pos)`).
    pub fn forward(
        &self,
        seqs: &[Vec<u32>],
        injections: &[Injection],
        positions: &[(usize, usize)],
        want_logits: bool,
    ) -> Result<EncoderOutput> {
        if positions.is_empty() {
            return Ok(EncoderOutput {
                hidden: self.cfg.hidden_size,
                vocab: self.cfg.vocab_size,
                transform: vec![],
                logits: want_logits.then(Vec::new),
            });
        }
        let mut batch = self.batch_layout(seqs)?;
        let (ids, pos_ids) = self.token_ids(seqs, &batch)?;
        for &(r, p) in positions {
            if r >= seqs.len() || p >= seqs[r].len() {
                bail!("requested position ({r}, {p}) is outside the batch");
            }
        }
        let x = self.embed(seqs, &batch, ids, pos_ids, injections)?;
        batch.mask = self.padding_mask(&batch)?;
        let x = self.layers_before_last(x, &batch)?;
        let sel = self.last_layer(&x, &batch, positions)?;
        self.head(&sel, want_logits)
    }

    /// Where the rows of `seqs` go. The fused CPU kernels take them packed one after another
    /// (no padding, so no work on padding in any layer); the generic path takes them padded
    /// to the longest. The padding mask is left to [`Encoder::padding_mask`].
    fn batch_layout(&self, seqs: &[Vec<u32>]) -> Result<BatchLayout> {
        let max = self.cfg.max_sequence_len();
        let l = seqs.iter().map(Vec::len).max().unwrap_or(0);
        if l > max {
            bail!("a sequence of {l} tokens is longer than the model's limit of {max}");
        }
        let lens: Vec<usize> = seqs.iter().map(Vec::len).collect();
        let packed = self.packs_tokens();
        let starts: Vec<usize> = if packed {
            lens.iter()
                .scan(0, |acc, &n| {
                    let s = *acc;
                    *acc += n;
                    Some(s)
                })
                .collect()
        } else {
            (0..seqs.len()).map(|r| r * l).collect()
        };
        let rows = if packed {
            lens.iter().sum()
        } else {
            seqs.len() * l
        };
        Ok(BatchLayout {
            lens,
            starts,
            seq_len: l,
            rows,
            packed,
            mask: None,
        })
    }

    /// The token ids of `seqs` at their rows of `batch` (padding elsewhere) and their
    /// position ids; an error for a token outside the vocabulary.
    fn token_ids(&self, seqs: &[Vec<u32>], batch: &BatchLayout) -> Result<(Vec<u32>, Vec<u32>)> {
        let cfg = &self.cfg;
        let (pad, vocab) = (cfg.pad_token_id, cfg.vocab_size);
        let mut ids = vec![pad; batch.rows];
        for (r, s) in seqs.iter().enumerate() {
            for (p, &t) in s.iter().enumerate() {
                if t as usize >= vocab {
                    bail!("token id {t} (row {r}, position {p}) is outside the model vocabulary of {vocab}");
                }
                ids[batch.starts[r] + p] = t;
            }
        }
        let mut pos_ids = vec![pad; batch.rows];
        for (r, &lo) in batch.starts.iter().enumerate() {
            let hi = lo + batch.span(r);
            match cfg.family {
                // HF: positions count non-pad tokens, starting after padding_idx.
                Family::Roberta => {
                    let mut c = 0u32;
                    for i in lo..hi {
                        if ids[i] != pad {
                            c += 1;
                            pos_ids[i] = pad + c;
                        }
                    }
                }
                _ => {
                    for (p, i) in (lo..hi).enumerate() {
                        pos_ids[i] = p as u32;
                    }
                }
            }
        }
        Ok((ids, pos_ids))
    }

    /// The embedding LayerNorm of word (or injected), position and token-type embeddings:
    /// `[batch.rows, hidden]`.
    fn embed(
        &self,
        seqs: &[Vec<u32>],
        batch: &BatchLayout,
        mut word_ids: Vec<u32>,
        pos_ids: Vec<u32>,
        injections: &[Injection],
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (h, pad, rows) = (cfg.hidden_size, cfg.pad_token_id, batch.rows);
        let dev = &self.device;
        let mut perm: Option<Vec<u32>> = None;
        let mut inj_data = Vec::new();
        for (k, inj) in injections.iter().enumerate() {
            if inj.row >= seqs.len() || inj.position >= seqs[inj.row].len() {
                bail!(
                    "injection at ({}, {}) is outside the batch",
                    inj.row,
                    inj.position
                );
            }
            if inj.vector.len() != h {
                bail!(
                    "injected vector has {} values, the model's hidden size is {h}",
                    inj.vector.len()
                );
            }
            let flat = batch.starts[inj.row] + inj.position;
            word_ids[flat] = pad;
            perm.get_or_insert_with(|| (0..rows as u32).collect())[flat] = (rows + k) as u32;
            inj_data.extend_from_slice(&inj.vector);
        }
        let mut word = self
            .word
            .index_select(&Tensor::from_vec(word_ids, rows, dev)?, 0)?;
        if let Some(perm) = perm {
            let inj =
                Tensor::from_vec(inj_data, (injections.len(), h), dev)?.to_dtype(self.dtype)?;
            word = Tensor::cat(&[&word, &inj], 0)?
                .index_select(&Tensor::from_vec(perm, rows, dev)?, 0)?;
        }
        let pos = self
            .position
            .index_select(&Tensor::from_vec(pos_ids, rows, dev)?, 0)?;
        if batch.packed {
            // `word` is a fresh tensor that nothing else refers to: LayerNorm(word + token
            // type + position) in place, one pass split over the cores.
            word.inplace_op3(
                &pos,
                &self.emb_post,
                &kernels::AddLayerNorm {
                    eps: cfg.layer_norm_eps as f32,
                },
            )?;
            return Ok(word);
        }
        let mut x = (word + pos)?;
        if let Some(tt) = &self.token_type0 {
            x = x.broadcast_add(tt)?;
        }
        Ok(self.emb_ln.forward(&x)?)
    }

    /// The additive attention mask `[b, 1, 1, l]` of a padded batch (the generic path): 0 on
    /// tokens, a large negative number on padding. `None` for packed batches.
    fn padding_mask(&self, batch: &BatchLayout) -> Result<Option<Tensor>> {
        if batch.packed {
            return Ok(None);
        }
        let (b, l, lens) = (batch.lens.len(), batch.seq_len, &batch.lens);
        let neg: Vec<f32> = (0..b * l)
            .map(|i| if i % l < lens[i / l] { 0.0 } else { -1e9 })
            .collect();
        Ok(Some(
            Tensor::from_vec(neg, (b, 1, 1, l), &self.device)?.to_dtype(self.dtype)?,
        ))
    }

    /// Every layer but the last over all rows of `x`: candle-transformers' layers where the
    /// generic path has them, else this encoder's own.
    fn layers_before_last(&self, mut x: Tensor, batch: &BatchLayout) -> Result<Tensor> {
        let n_layers = self.layers.len();
        match (&self.generic, &batch.mask) {
            (Some(enc), Some(mask)) => {
                let (b, l, h) = (batch.lens.len(), batch.seq_len, self.cfg.hidden_size);
                x = enc
                    .forward(&x.reshape((b, l, h))?, mask)?
                    .reshape((b * l, h))?;
            }
            _ => {
                for layer in &self.layers[..n_layers - 1] {
                    x = self.layer_full(layer, &x, batch)?;
                }
            }
        }
        Ok(x)
    }

    /// The last layer for the rows at `positions` only: `[positions.len(), hidden]`.
    fn last_layer(
        &self,
        x: &Tensor,
        batch: &BatchLayout,
        positions: &[(usize, usize)],
    ) -> Result<Tensor> {
        let dev = &self.device;
        let flat_idx: Vec<u32> = positions
            .iter()
            .map(|&(r, p)| (batch.starts[r] + p) as u32)
            .collect();
        let row_idx: Vec<u32> = positions.iter().map(|&(r, _)| r as u32).collect();
        let n = positions.len();
        self.layer_selected(
            self.layers.last().expect("a model has layers"),
            x,
            &Tensor::from_vec(flat_idx, n, dev)?,
            &Tensor::from_vec(row_idx, n, dev)?,
            batch,
            positions,
        )
    }

    /// The MLM head on the selected rows: its transform output and, when asked, the
    /// vocabulary logits.
    fn head(&self, sel: &Tensor, want_logits: bool) -> Result<EncoderOutput> {
        let t = self.head_ln.forward(&activate(
            self.head_act,
            &self.head_dense.forward(sel)?,
            self.cpu_kernels,
        )?)?;
        let logits = if want_logits {
            let lg = match self.packed_decoder()? {
                Some(dec) => dec.forward(&t)?,
                None => t
                    .matmul(&self.decoder.t()?)?
                    .broadcast_add(&self.decoder_bias)?,
            };
            Some(lg.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        } else {
            None
        };
        Ok(EncoderOutput {
            hidden: self.cfg.hidden_size,
            vocab: self.cfg.vocab_size,
            transform: t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
            logits,
        })
    }

    /// The vocabulary decoder packed for the CPU sgemm, made on the first request for
    /// logits (most builds never ask for them); `None` where the dense layers are not packed.
    fn packed_decoder(&self) -> candle_core::Result<Option<&Linear>> {
        if !matches!(self.matmul, Matmul::Packed(_)) {
            return Ok(None);
        }
        if let Some(d) = self.decoder_packed.get() {
            return Ok(Some(d));
        }
        let d = Linear::new(self.decoder.clone(), self.decoder_bias.clone()).pack(self.matmul)?;
        Ok(Some(self.decoder_packed.get_or_init(|| d)))
    }

    /// Token rows one `forward` call processes for sequences of `lens` tokens: their sum when
    /// packed, rows × longest when padded.
    pub fn rows_processed(&self, lens: &[usize]) -> usize {
        if self.packs_tokens() {
            lens.iter().sum()
        } else {
            lens.len() * lens.iter().copied().max().unwrap_or(0)
        }
    }

    /// Multiply-add FLOPs (×2) of the matrix products of one `forward` call on sequences of
    /// `lens` tokens with `n` requested positions (the last layer only computes those rows).
    pub fn matmul_flops(&self, lens: &[usize], n: usize) -> f64 {
        let (h, i) = (
            self.cfg.hidden_size as f64,
            self.cfg.intermediate_size as f64,
        );
        let l = lens.iter().copied().max().unwrap_or(0) as f64;
        let rows = self.rows_processed(lens) as f64;
        // Query-key pairs of the attention products.
        let pairs = if self.packs_tokens() {
            lens.iter().map(|&n| (n * n) as f64).sum()
        } else {
            lens.len() as f64 * l * l
        };
        let n = n as f64;
        let full = 2.0 * rows * (4.0 * h * h + 2.0 * h * i) + 4.0 * pairs * h;
        let last =
            2.0 * rows * 2.0 * h * h + 2.0 * n * (2.0 * h * h + 2.0 * h * i) + 4.0 * n * l * h;
        let head = 2.0 * n * h * h;
        (self.layers.len() as f64 - 1.0) * full + last + head
    }

    fn heads(&self) -> (usize, usize) {
        let nh = self.cfg.num_heads;
        (nh, self.cfg.hidden_size / nh)
    }

    /// Splits `[b*l, h]` into `[b, heads, l, d]`.
    fn split_heads(&self, x: &Tensor, b: usize, l: usize) -> candle_core::Result<Tensor> {
        let (nh, d) = self.heads();
        x.reshape((b, l, nh, d))?.transpose(1, 2)?.contiguous()
    }

    fn ffn(&self, layer: &Layer, x: &Tensor, attn: &Tensor) -> candle_core::Result<Tensor> {
        if self.packs_tokens() && self.cfg.activation == Activation::Gelu {
            // Fused: bias + residual + LayerNorm in one pass; bias + gelu in one pass.
            let eps = self.cfg.layer_norm_eps;
            let a = layer
                .attn_out
                .forward_add_ln(attn, x, &layer.attn_post, eps)?;
            let i = layer.inter.forward_gelu(&a)?;
            return layer.out.forward_add_ln(&i, &a, &layer.out_post, eps);
        }
        let a = layer
            .attn_ln
            .forward(&(layer.attn_out.forward(attn)? + x)?)?;
        let i = activate(
            self.cfg.activation,
            &layer.inter.forward(&a)?,
            self.cpu_kernels,
        )?;
        layer.out_ln.forward(&(layer.out.forward(&i)? + a)?)
    }

    /// The fused attention kernel over the sequences of `batch` for `queries` (see
    /// [`kernels::Attention`]); queries are read at column 0 of their rows, keys and values
    /// at `k_offset` and `v_offset`.
    fn fused_attention(
        &self,
        batch: &BatchLayout,
        queries: Vec<(usize, usize, usize)>,
        out_rows: usize,
        k_offset: usize,
        v_offset: usize,
    ) -> kernels::Attention {
        let (heads, head_dim) = self.heads();
        kernels::Attention {
            heads,
            head_dim,
            lens: batch.lens.clone(),
            starts: batch.starts.clone(),
            queries,
            out_rows,
            q_offset: 0,
            k_offset,
            v_offset,
        }
    }

    fn layer_full(&self, layer: &Layer, x: &Tensor, batch: &BatchLayout) -> Result<Tensor> {
        let h = self.cfg.hidden_size;
        let (_, d) = self.heads();
        let (lens, l) = (&batch.lens, batch.seq_len);
        let b = lens.len();
        let Projections::Fused(qkv) = &layer.proj else {
            bail!("internal error: the last layer runs on selected rows only");
        };
        let qkv = qkv.forward(x)?;
        let Some(mask) = &batch.mask else {
            // Fused kernel: every token attends over its row's tokens.
            let queries = (0..b)
                .flat_map(|r| {
                    let s = batch.starts[r];
                    (s..s + lens[r]).map(move |i| (r, i, i))
                })
                .collect();
            let op = self.fused_attention(batch, queries, x.dim(0)?, h, 2 * h);
            let ctx = qkv.apply_op2_no_bwd(&qkv, &op)?;
            return Ok(self.ffn(layer, x, &ctx)?);
        };
        let q = (self.split_heads(&qkv.narrow(1, 0, h)?, b, l)? * (1.0 / (d as f64).sqrt()))?;
        let k = self.split_heads(&qkv.narrow(1, h, h)?, b, l)?;
        let v = self.split_heads(&qkv.narrow(1, 2 * h, h)?, b, l)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * l, h))?;
        Ok(self.ffn(layer, x, &ctx)?)
    }

    fn layer_selected(
        &self,
        layer: &Layer,
        x: &Tensor,
        flat_idx: &Tensor,
        row_idx: &Tensor,
        batch: &BatchLayout,
        positions: &[(usize, usize)],
    ) -> Result<Tensor> {
        let h = self.cfg.hidden_size;
        let (nh, d) = self.heads();
        let b = batch.lens.len();
        let n = flat_idx.dim(0)?;
        let xs = x.index_select(flat_idx, 0)?;
        let Projections::Split {
            q: last_q,
            kv: last_kv,
        } = &layer.proj
        else {
            bail!("internal error: only the last layer runs on selected rows");
        };
        let kv = last_kv.forward(x)?;
        let l = batch.seq_len;
        let Some(mask) = &batch.mask else {
            let queries = positions
                .iter()
                .enumerate()
                .map(|(i, &(r, _))| (r, i, i))
                .collect();
            let op = self.fused_attention(batch, queries, n, 0, h);
            let ctx = last_q.forward(&xs)?.apply_op2_no_bwd(&kv, &op)?;
            return Ok(self.ffn(layer, &xs, &ctx)?);
        };
        let q = (last_q.forward(&xs)?.reshape((n, nh, 1, d))? * (1.0 / (d as f64).sqrt()))?;
        let k = self
            .split_heads(&kv.narrow(1, 0, h)?, b, l)?
            .index_select(row_idx, 0)?;
        let v = self
            .split_heads(&kv.narrow(1, h, h)?, b, l)?
            .index_select(row_idx, 0)?;
        let scores = q
            .matmul(&k.t()?)?
            .broadcast_add(&mask.index_select(row_idx, 0)?)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let ctx = probs.matmul(&v)?.reshape((n, h))?;
        // The output layer of the selected rows only: this is what makes it cheap.
        Ok(self.ffn(layer, &xs, &ctx)?)
    }
}
