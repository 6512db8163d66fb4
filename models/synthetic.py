"""Random-weight SmolVLM / Gemma 3 GGUF pairs (text + mmproj), so tests and benchmarks run real llama.cpp offline."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, LlamaFileType, RopeScalingType
from gguf.quants import quantize
from loupe.models.synthetic_specs import SPECS, SyntheticSpec  # re-exported: `from loupe.models.synthetic import SPECS`
from loupe.models.synthetic_vocab import GEMMA3_CHAT_TEMPLATE, SMOLVLM_CHAT_TEMPLATE, build_vocab

GENERATOR_VERSION = 2  # bump when the bytes written for a given spec/seed/type change
_CHUNK_ELEMS = 1 << 24  # generate/quantize big tensors in ~64 MB float32 slices
_W_STD = 0.02  # weights ~ U(-a, a) with this standard deviation

Q = GGMLQuantizationType
TEXT_TYPES: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f32": (Q.F32, LlamaFileType.ALL_F32),
    "f16": (Q.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (Q.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (Q.Q4_0, LlamaFileType.MOSTLY_Q4_0),  # token_embd / output stay Q8_0
}
MMPROJ_TYPES: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f32": (Q.F32, LlamaFileType.ALL_F32),
    "f16": (Q.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (Q.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, LlamaFileType.MOSTLY_Q8_0),  # as ggml-org publishes mmproj-*-Q8_0.gguf; embeddings stay F32
}


class _Special(NamedTuple):
    """A family's special tokens, as its tokenizer names them."""

    bos: str
    eos: str
    eot: str
    unk: str
    pad: str


_SPECIAL_TOKENS = {
    "smolvlm": _Special("<|im_start|>", "<end_of_utterance>", "<end_of_utterance>", "<|endoftext|>", "<|im_end|>"),
    "gemma3": _Special("<bos>", "<eos>", "<end_of_turn>", "<unk>", "<pad>"),
}


@dataclass(frozen=True)
class SyntheticModel:
    name: str
    family: str
    text_path: Path
    mmproj_path: Path


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]  # numpy order (rows = output features last in GGUF's ne order)
    qtype: GGMLQuantizationType
    init: str = "w"  # "w" random weight, "one", "zero"

    @property
    def nbytes(self) -> int:
        block, size = GGML_QUANT_SIZES[self.qtype]
        return int(np.prod(self.shape[:-1], dtype=np.int64)) * (self.shape[-1] // block) * size


def _text_tensors(spec: SyntheticSpec, n_vocab: int, text_type: str) -> list[_Tensor]:
    base = TEXT_TYPES[text_type][0]

    def mat(name: str, rows: int, cols: int) -> _Tensor:
        qtype = Q.Q8_0 if base == Q.Q4_0 and not name.startswith("blk.") else base
        if cols % GGML_QUANT_SIZES[qtype][0]:
            qtype = Q.F16  # row size not a multiple of the quant block
        return _Tensor(name, (rows, cols), qtype)

    def norm(name: str, size: int) -> _Tensor:
        return _Tensor(name, (size,), Q.F32, "one")  # gemma3 stores 1 + w; HF initializes w = 0

    e, hd, gemma = spec.n_embd, spec.n_head_dim, spec.family == "gemma3"
    out = [mat("token_embd.weight", n_vocab, e), norm("output_norm.weight", e)]
    if not spec.tie_embeddings:
        out.append(mat("output.weight", n_vocab, e))
    for i in range(spec.n_layer):
        p = f"blk.{i}."
        out += [
            norm(p + "attn_norm.weight", e),
            mat(p + "attn_q.weight", spec.n_head * hd, e),
            mat(p + "attn_k.weight", spec.n_head_kv * hd, e),
            mat(p + "attn_v.weight", spec.n_head_kv * hd, e),
            mat(p + "attn_output.weight", e, spec.n_head * hd),
        ]
        if gemma:
            out += [
                norm(p + "attn_q_norm.weight", hd),
                norm(p + "attn_k_norm.weight", hd),
                norm(p + "post_attention_norm.weight", e),
                norm(p + "post_ffw_norm.weight", e),
            ]
        out += [
            norm(p + "ffn_norm.weight", e),
            mat(p + "ffn_gate.weight", spec.n_ff, e),
            mat(p + "ffn_up.weight", spec.n_ff, e),
            mat(p + "ffn_down.weight", e, spec.n_ff),
        ]
    return out


def _vision_tensors(spec: SyntheticSpec, mmproj_type: str) -> list[_Tensor]:
    wtype = MMPROJ_TYPES[mmproj_type][0]
    e, f, p = spec.v_n_embd, spec.v_n_ff, spec.v_patch_size
    n_pos = (spec.v_image_size // p) ** 2

    def lin(name: str, rows: int, cols: int) -> list[_Tensor]:
        return [_Tensor(f"{name}.weight", (rows, cols), wtype), _Tensor(f"{name}.bias", (rows,), Q.F32, "zero")]

    def ln(name: str) -> list[_Tensor]:
        return [_Tensor(f"{name}.weight", (e,), Q.F32, "one"), _Tensor(f"{name}.bias", (e,), Q.F32, "zero")]

    # the converters force the SigLIP embeddings (conv patch embedding, positions) to F32
    out = [
        _Tensor("v.patch_embd.weight", (e, 3, p, p), Q.F32),
        _Tensor("v.patch_embd.bias", (e,), Q.F32, "zero"),
        _Tensor("v.position_embd.weight", (n_pos, e), Q.F32),
    ]
    for i in range(spec.v_n_layer):
        b = f"v.blk.{i}"
        out += [
            *lin(f"{b}.attn_q", e, e),
            *lin(f"{b}.attn_k", e, e),
            *lin(f"{b}.attn_v", e, e),
            *lin(f"{b}.attn_out", e, e),
            *ln(f"{b}.ln1"),
            *ln(f"{b}.ln2"),
            *lin(f"{b}.ffn_up", f, e),
            *lin(f"{b}.ffn_down", e, f),
        ]
    out += ln("v.post_ln")
    if spec.family == "smolvlm":
        out.append(_Tensor("mm.model.fc.weight", (spec.n_embd, e * spec.scale_factor**2), wtype))
    else:
        # convert_hf_to_gguf always writes the gemma3 input projection as F16 (llama.cpp issue 13025)
        out += [
            _Tensor("mm.input_projection.weight", (e, spec.n_embd), Q.F16),
            _Tensor("mm.soft_emb_norm.weight", (e,), Q.F32, "one"),
        ]
    return out


def _chunks(t: _Tensor, seed: int) -> Iterator[np.ndarray]:
    """The tensor's bytes in row slices, from an RNG keyed on (seed, tensor name): same seed -> same bytes."""
    rows, cols = t.shape[0], int(np.prod(t.shape[1:], dtype=np.int64))
    if t.init != "w":
        value = np.float32(1.0 if t.init == "one" else 0.0)
        yield np.full(rows * cols, value, dtype=np.float32)
        return
    rng = np.random.default_rng([seed, zlib.crc32(t.name.encode())])
    half = np.float32(_W_STD * np.sqrt(3.0))
    step = max(1, _CHUNK_ELEMS // cols)
    for start in range(0, rows, step):
        n = min(step, rows - start)
        x = rng.random((n, cols), dtype=np.float32)
        x -= np.float32(0.5)
        x *= 2 * half
        yield quantize(x, t.qtype)


def _write_gguf(path: Path, arch: str, set_kv: Callable[[GGUFWriter], None], tensors: list[_Tensor], seed: int) -> None:
    """Header + KV + tensor infos through GGUFWriter, then the data streamed slice by slice; atomic rename."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    writer = GGUFWriter(part, arch)
    try:
        set_kv(writer)
        for t in tensors:
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=t.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        assert writer.fout is not None
        fout, align = writer.fout[0], writer.data_alignment
        for t in tensors:
            fout.write(b"\0" * (-fout.tell() % align))
            written = 0
            for chunk in _chunks(t, seed):
                fout.write(np.ascontiguousarray(chunk).data)
                written += chunk.nbytes
            if written != t.nbytes:
                raise AssertionError(f"{t.name}: wrote {written} bytes, expected {t.nbytes}")
        fout.write(b"\0" * (-fout.tell() % align))
        writer.close()
        os.replace(part, path)
    finally:
        writer.close()
        part.unlink(missing_ok=True)


def _text_kv(spec: SyntheticSpec, text_type: str, seed: int) -> tuple[Callable[[GGUFWriter], None], int]:
    vocab = build_vocab(spec.family, spec.vocab_size)
    smol = spec.family == "smolvlm"

    def set_kv(w: GGUFWriter) -> None:
        w.add_type("model")
        w.add_name(f"loupe-synthetic-{spec.name}")
        w.add_description(f"random weights (seed {seed}), not a trained model; generated by models/synthetic.py")
        w.add_file_type(TEXT_TYPES[text_type][1])
        if TEXT_TYPES[text_type][0] in (Q.Q8_0, Q.Q4_0):
            w.add_quantization_version(2)
        w.add_vocab_size(len(vocab.tokens))
        w.add_context_length(spec.n_ctx)
        w.add_embedding_length(spec.n_embd)
        w.add_block_count(spec.n_layer)
        w.add_feed_forward_length(spec.n_ff)
        w.add_head_count(spec.n_head)
        w.add_head_count_kv(spec.n_head_kv)
        w.add_layer_norm_rms_eps(spec.rms_eps)
        w.add_rope_freq_base(spec.rope_theta)
        if smol:
            w.add_rope_dimension_count(spec.n_head_dim)
        else:
            w.add_key_length(spec.n_head_dim)
            w.add_value_length(spec.n_head_dim)
            w.add_sliding_window(spec.sliding_window)
            w.add_sliding_window_pattern(spec.swa_pattern)
            w.add_rope_freq_base_swa(10000.0)
            if spec.rope_scale_linear:
                w.add_rope_scaling_type(RopeScalingType.LINEAR)
                w.add_rope_scaling_factor(spec.rope_scale_linear)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(vocab.tokens)
        w.add_token_types(vocab.types)
        w.add_token_merges(vocab.merges)
        ids, special = vocab.ids, _SPECIAL_TOKENS[spec.family]
        w.add_bos_token_id(ids[special.bos])
        w.add_eos_token_id(ids[special.eos])
        w.add_eot_token_id(ids[special.eot])
        w.add_unk_token_id(ids[special.unk])
        w.add_pad_token_id(ids[special.pad])
        w.add_add_bos_token(not smol)  # SmolVLM's template itself starts with <|im_start|>
        w.add_add_eos_token(False)
        w.add_chat_template(SMOLVLM_CHAT_TEMPLATE if smol else GEMMA3_CHAT_TEMPLATE)

    return set_kv, len(vocab.tokens)


def _mmproj_kv(spec: SyntheticSpec, mmproj_type: str, seed: int) -> Callable[[GGUFWriter], None]:
    def set_kv(w: GGUFWriter) -> None:
        w.add_type("mmproj")
        w.add_name(f"loupe-synthetic-{spec.name}-mmproj")
        w.add_description(f"random weights (seed {seed}), not a trained model; generated by models/synthetic.py")
        w.add_file_type(MMPROJ_TYPES[mmproj_type][1])
        w.add_clip_has_vision_encoder(True)
        w.add_clip_projector_type("idefics3" if spec.family == "smolvlm" else "gemma3")
        w.add_vision_projection_dim(spec.n_embd)
        w.add_vision_image_size(spec.v_image_size)
        w.add_vision_patch_size(spec.v_patch_size)
        w.add_vision_embedding_length(spec.v_n_embd)
        w.add_vision_feed_forward_length(spec.v_n_ff)
        w.add_vision_block_count(spec.v_n_layer)
        w.add_vision_head_count(spec.v_n_head)
        w.add_vision_attention_layernorm_eps(spec.v_eps)
        w.add_vision_image_mean([0.5, 0.5, 0.5])
        w.add_vision_image_std([0.5, 0.5, 0.5])
        w.add_vision_use_gelu(True)
        if spec.family == "smolvlm":
            w.add_vision_projector_scale_factor(spec.scale_factor)
            if spec.preproc_image_size:
                w.add_vision_preproc_image_size(spec.preproc_image_size)
        elif spec.scale_factor != 4:  # clip.cpp defaults the gemma3 pooling kernel to 4
            w.add_vision_projector_scale_factor(spec.scale_factor)

    return set_kv


def _is_current(path: Path, fingerprint: str) -> bool:
    marker = path.with_name(path.name + ".synthetic.json")
    try:
        meta = json.loads(marker.read_text())
        return meta["fingerprint"] == fingerprint and path.stat().st_size == meta["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _mark(path: Path, fingerprint: str) -> None:
    marker = path.with_name(path.name + ".synthetic.json")
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "size": path.stat().st_size}))
    os.replace(tmp, marker)


def build(
    name: str, out_dir: Path, *, seed: int = 0, text_type: str = "f32", mmproj_type: str = "f32"
) -> SyntheticModel:
    """Write (or reuse if already complete, checked by a marker/size) <out_dir>/<name>-<text_type>.gguf and
    <name>-mmproj-<mmproj_type>.gguf. Writes to .part files then renames atomically. Deterministic for a given seed."""
    if name not in SPECS:
        raise KeyError(f"unknown synthetic model {name!r}; known: {sorted(SPECS)}")
    if text_type not in TEXT_TYPES:
        raise ValueError(f"text_type must be one of {sorted(TEXT_TYPES)}")
    if mmproj_type not in MMPROJ_TYPES:
        raise ValueError(f"mmproj_type must be one of {sorted(MMPROJ_TYPES)}")
    spec = SPECS[name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text_path = out_dir / f"{name}-{text_type}.gguf"
    mmproj_path = out_dir / f"{name}-mmproj-{mmproj_type}.gguf"
    base = json.dumps([GENERATOR_VERSION, asdict(spec), seed], sort_keys=True)
    for path, kind, qtype in ((text_path, "text", text_type), (mmproj_path, "mmproj", mmproj_type)):
        fingerprint = hashlib.sha256(f"{base}/{kind}/{qtype}".encode()).hexdigest()
        if _is_current(path, fingerprint):
            continue
        if kind == "text":
            set_kv, n_vocab = _text_kv(spec, qtype, seed)
            _write_gguf(path, spec.text_arch, set_kv, _text_tensors(spec, n_vocab, qtype), seed)
        else:
            _write_gguf(path, "clip", _mmproj_kv(spec, qtype, seed), _vision_tensors(spec, qtype), seed + 1)
        _mark(path, fingerprint)
    return SyntheticModel(name=name, family=spec.family, text_path=text_path, mmproj_path=mmproj_path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loupe.models.synthetic", description=__doc__)
    parser.add_argument("name", choices=sorted(SPECS))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--text-type", default="f32", choices=sorted(TEXT_TYPES))
    parser.add_argument("--mmproj-type", default="f32", choices=sorted(MMPROJ_TYPES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = build(args.name, args.out_dir, seed=args.seed, text_type=args.text_type, mmproj_type=args.mmproj_type)
    print(model.text_path)
    print(model.mmproj_path)


if __name__ == "__main__":
    main()
