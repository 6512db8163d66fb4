"""Hostile model files: 1,000 mutated GGUF text models and projectors, each loaded by the real llama.cpp in a model
process (loupe.backends.worker.ModelProbe). The test process never crashes; each file loads, or is a one-line
ModelLoadError, or a reported crash of the model process.

Mutations (seeded): bit flips anywhere and in the header, truncation at random offsets, and header fields set to
hostile values: the tensor and key counts, string lengths, array counts, value types, tensor dimensions, their
number, types and data offsets. $LOUPE_FUZZ_FILES changes the count (e.g. 10,000 for a longer run).
"""

from __future__ import annotations

import os
import random
import struct
from collections import Counter
from pathlib import Path

import pytest
from loupe.backends.worker import CRASHED, ModelProbe
from loupe.core.errors import ModelLoadError
from loupe.models.synthetic import SyntheticModel, build

N_FILES = int(os.environ.get("LOUPE_FUZZ_FILES", "1000"))
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes
_STRING, _ARRAY = 8, 9
HOSTILE = [0, 1, 2, 3, 0xFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**64 - 1]


def header_fields(data: bytes) -> list[tuple[str, int, int]]:
    """(kind, offset, width) of every numeric field of a GGUF header, up to the end of the tensor infos."""
    fields: list[tuple[str, int, int]] = [("version", 4, 4), ("n_tensors", 8, 8), ("n_kv", 16, 8)]
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24

    def string(kind: str) -> None:
        nonlocal pos
        fields.append((kind, pos, 8))
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n

    def value(vtype: int) -> None:
        nonlocal pos
        if vtype == _STRING:
            string("value_len")
        elif vtype == _ARRAY:
            fields.append(("array_type", pos, 4))
            fields.append(("array_count", pos + 4, 8))
            etype, count = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(count):
                value(etype)
        else:
            pos += _FIXED[vtype]

    for _ in range(n_kv):
        string("key_len")
        fields.append(("value_type", pos, 4))
        (vtype,) = struct.unpack_from("<I", data, pos)
        pos += 4
        value(vtype)
    for _ in range(n_tensors):
        string("name_len")
        fields.append(("n_dims", pos, 4))
        (n_dims,) = struct.unpack_from("<I", data, pos)
        pos += 4
        fields.extend(("dim", pos + 8 * i, 8) for i in range(n_dims))
        pos += 8 * n_dims
        fields.append(("tensor_type", pos, 4))
        fields.append(("tensor_offset", pos + 4, 8))
        pos += 12
    fields.append(("header_end", pos, 0))
    return fields


def mutate(data: bytes, fields: list[tuple[str, int, int]], rng: random.Random) -> tuple[bytes, str]:
    """One hostile variant of `data` and what was done to it."""
    out = bytearray(data)
    header_end = fields[-1][1]
    how = rng.choices(["flip", "flip_header", "truncate", "field"], weights=[15, 20, 15, 50])[0]
    if how == "flip":
        at = rng.randrange(len(out))
        out[at] ^= 1 << rng.randrange(8)
        return bytes(out), f"bit flip at {at}"
    if how == "flip_header":
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(header_end)
            out[at] ^= 1 << rng.randrange(8)
        return bytes(out), "bit flips in the header"
    if how == "truncate":
        at = rng.randrange(len(out))
        return bytes(out[:at]), f"truncated at {at}"
    kinds = sorted({k for k, _, w in fields if w})
    kind = rng.choice(kinds)
    _, at, width = rng.choice([f for f in fields if f[0] == kind])
    (old,) = struct.unpack_from("<I" if width == 4 else "<Q", data, at)
    new = rng.choice([*HOSTILE, old + 1, max(0, old - 1), old * 2, rng.getrandbits(8 * width)]) % (1 << 8 * width)
    struct.pack_into("<I" if width == 4 else "<Q", out, at, new)
    return bytes(out), f"{kind} at {at}: {old} -> {new}"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> SyntheticModel:
    # Q8_0 text weights: the quantized block layout is parsed too
    return build("tiny-smolvlm", tmp_path_factory.mktemp("fuzz-src"), text_type="q8_0", mmproj_type="f16")


def test_the_header_walker_reads_the_whole_header(sources: SyntheticModel):
    for path in (sources.text_path, sources.mmproj_path):
        data = path.read_bytes()
        fields = header_fields(data)
        n_tensors = struct.unpack_from("<Q", data, 8)[0]
        assert sum(1 for k, _, _ in fields if k == "tensor_offset") == n_tensors > 0
        assert fields[-1][1] < len(data)  # the tensor data follows


def test_mutated_model_files_never_crash_the_caller(sources: SyntheticModel, tmp_path: Path):
    rng = random.Random(20261205)
    originals = {"text": sources.text_path.read_bytes(), "mmproj": sources.mmproj_path.read_bytes()}
    fields = {k: header_fields(v) for k, v in originals.items()}
    text, mmproj = tmp_path / "text.gguf", tmp_path / "mmproj.gguf"
    probe = ModelProbe()
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    try:
        for i in range(N_FILES):
            target = "text" if i % 2 == 0 else "mmproj"
            data, how = mutate(originals[target], fields[target], rng)
            text.write_bytes(data if target == "text" else originals["text"])
            mmproj.write_bytes(data if target == "mmproj" else originals["mmproj"])
            try:
                probe.check(text, mmproj)
            except ModelLoadError as exc:
                message = str(exc)
                assert "\n" not in message and "Traceback" not in message, (how, message)
                assert str(text if target == "text" else mmproj) in message, (how, message)
                outcomes["crashed" if message.startswith(CRASHED) else "refused"] += 1
                if message.startswith(CRASHED):
                    crashes.append(f"{how} in {target}: {message.split(' loading ')[0]}")
            else:
                outcomes["loaded"] += 1
    finally:
        probe.close()
    print(f"\n{N_FILES} mutated files: {dict(outcomes)}", *crashes, sep="\n")
    assert sum(outcomes.values()) == N_FILES
    assert outcomes["refused"] + outcomes["crashed"] > N_FILES // 4  # the mutations do reach the parser
