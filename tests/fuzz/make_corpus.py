#!/usr/bin/env python3
"""make_corpus.py - write the seed corpus of the fuzz targets (tests/fuzz/corpus/).

    python3 tests/fuzz/make_corpus.py

Valid files in the reference writer's layout (header padded with spaces to a
multiple of 8) and one invalid file per rejection rule of FORMATS.md, so that
every branch of the validator is reached from the first run.  The real files
of tests/data/real/safetensors-cpp/ are copied in unchanged.  The output is
deterministic; rerun after changing this script and commit the result.
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "data", "real", "safetensors-cpp")
SEP = b"--lxpart--"
BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
        "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16,
        "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64,
        "F64": 64, "I64": 64, "U64": 64}


def raw(header_text, data=b"", pad=True):
    """8-byte length, header text (padded), data."""
    h = header_text.encode() if isinstance(header_text, str) else header_text
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def st(tensors, meta=None):
    """A valid file: tensors = [(name, dtype, shape)], contiguous in that order."""
    head, off, data = {}, 0, b""
    if meta is not None:
        head["__metadata__"] = meta
    for i, (name, dtype, shape) in enumerate(tensors):
        n = 1
        for d in shape:
            n *= d
        nbytes = n * BITS[dtype] // 8
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nbytes]}
        data += bytes((i * 37 + k) & 0xff for k in range(nbytes))
        off += nbytes
    return raw(json.dumps(head, separators=(",", ":")), data)


def write(kind, name, blob):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def headers():
    for f in ("model.safetensors", "safetensors_abuse_attempt_1.safetensors"):
        with open(os.path.join(REAL, f), "rb") as src:
            write("header", "real-" + f, src.read())
    lora = [("base_model.model.h.0.attn.c_attn.lora_A.weight", "F32", [2, 4]),
            ("base_model.model.h.0.attn.c_attn.lora_B.weight", "F32", [6, 2])]
    write("header", "ok-peft-like", st(lora, {"format": "pt"}))
    write("header", "ok-all-dtypes", st([("t_" + d.lower(), d, [2, 4]) for d in BITS]))
    write("header", "ok-scalar-and-empty",
          st([("empty", "F32", [2, 0]), ("scalar", "BF16", []), ("vec", "F16", [3])]))
    write("header", "ok-metadata-only", raw('{"__metadata__":{"format":"pt","k":"v"}}'))
    write("header", "ok-empty-object", raw("{}"))
    write("header", "ok-unpadded-unicode",
          raw('{"w\u00e9ight\u2603":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', b"ab",
              pad=False))
    # one invalid file per rule, in the reference reader's order
    write("header", "bad-short", b"\x10\x00\x00")
    write("header", "bad-header-too-large", struct.pack("<Q", 100000001) + b"{}")
    write("header", "bad-header-past-end", struct.pack("<Q", 64) + b"{}")
    write("header", "bad-not-utf8", raw(b'{"\xff":{}}'))
    write("header", "bad-overlong-utf8", raw(b'{"\xc0\xaf":{}}'))
    write("header", "bad-not-json", raw('{"a":{"dtype":"F32",'))
    write("header", "bad-top-array", raw("[1,2]"))
    write("header", "bad-dtype-type", raw(json.dumps({"a": entry(3, [1], 0, 4)}), b"\0" * 4))
    write("header", "bad-dtype-unknown", raw(json.dumps({"a": entry("F33", [1], 0, 4)}), b"\0" * 4))
    write("header", "bad-shape-real", raw('{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}',
                                          b"\0" * 4))
    write("header", "bad-shape-negative", raw(json.dumps({"a": entry("F32", [-1], 0, 4)}), b"\0" * 4))
    write("header", "bad-too-many-dims", raw(json.dumps({"a": entry("F32", [1] * 17, 0, 4)}), b"\0" * 4))
    write("header", "bad-offsets-three", raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}',
                                             b"\0"))
    write("header", "bad-end-before-begin", raw(json.dumps({"a": entry("U8", [0], 4, 0)}), b"\0" * 4))
    write("header", "bad-first-not-zero", raw(json.dumps({"a": entry("U8", [2], 2, 4)}), b"\0" * 4))
    write("header", "bad-gap", raw(json.dumps({"a": entry("U8", [2], 0, 2), "b": entry("U8", [1], 3, 4)}),
                                   b"\0" * 4))
    write("header", "bad-overlap", raw(json.dumps({"a": entry("U8", [2], 0, 2), "b": entry("U8", [2], 1, 3)}),
                                       b"\0" * 3))
    write("header", "bad-shape-overflow",
          raw(json.dumps({"a": entry("F32", [1 << 40, 1 << 40, 0], 0, 0)})))
    write("header", "bad-partial-byte", raw(json.dumps({"a": entry("F4", [3], 0, 2)}), b"\0" * 2))
    write("header", "bad-length-mismatch", raw(json.dumps({"a": entry("F32", [2], 0, 4)}), b"\0" * 4))
    write("header", "bad-trailing-bytes", st([("a", "U8", [4])]) + b"xx")
    write("header", "bad-truncated", st([("a", "F32", [4, 4])])[:-5])
    write("header", "bad-duplicate-name",
          raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
              '"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\0\0"))
    write("header", "bad-nul-in-name", raw('{"a\\u0000b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
                                           b"\0"))
    write("header", "bad-metadata-value", raw('{"__metadata__":{"format":1}}'))


def index(weight_map, total=None):
    doc = {}
    if total is not None:
        doc["metadata"] = {"total_size": total}
    doc["weight_map"] = weight_map
    return json.dumps(doc, indent=2).encode()


def indexes():
    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    write("index", "ok-two-shards",
          index({"lm_head.weight": s2, "model.embed_tokens.weight": s1,
                 "model.layers.0.mlp.up_proj.weight": s1}, 1234))
    write("index", "ok-no-metadata", index({"a": "model.safetensors"}))
    write("index", "ok-total-real", b'{"metadata":{"total_size":13476839424.0},"weight_map":{"a":"x"}}')
    write("index", "ok-empty-map", index({}, 0))
    write("index", "bad-dotdot", index({"a": "../model.safetensors"}))
    write("index", "bad-absolute", index({"a": "/etc/passwd"}))
    write("index", "bad-dot", index({"a": "."}))
    write("index", "bad-subdir", index({"a": "sub/model.safetensors"}))
    write("index", "bad-empty-shard", index({"a": ""}))
    write("index", "bad-nul-shard", b'{"weight_map":{"a":"x\\u0000.safetensors"}}')
    write("index", "bad-nul-tensor", b'{"weight_map":{"a\\u0000":"x.safetensors"}}')
    write("index", "bad-shard-not-string", b'{"weight_map":{"a":["x"]}}')
    write("index", "bad-map-not-object", b'{"weight_map":["a","x"]}')
    write("index", "bad-no-map", b'{"metadata":{"total_size":0}}')
    write("index", "bad-duplicate", b'{"weight_map":{"a":"x","a":"y"}}')
    write("index", "bad-total-negative", index({"a": "x"}, -1))
    write("index", "bad-total-string", b'{"metadata":{"total_size":"12"},"weight_map":{"a":"x"}}')
    write("index", "bad-metadata-array", b'{"metadata":[],"weight_map":{"a":"x"}}')
    write("index", "bad-not-json", b'{"weight_map":{"a":')
    write("index", "bad-top-array", b'[{"weight_map":{}}]')


def checkpoints():
    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    a = st([("model.embed_tokens.weight", "BF16", [4, 2]),
            ("model.layers.0.mlp.up_proj.weight", "BF16", [2, 2])], {"format": "pt"})
    b = st([("lm_head.weight", "F32", [2, 2])], {"format": "pt"})
    good = {"lm_head.weight": s2, "model.embed_tokens.weight": s1,
            "model.layers.0.mlp.up_proj.weight": s1}
    with open(os.path.join(REAL, "model.safetensors"), "rb") as src:
        write("checkpoint", "ok-single-real", src.read())
    write("checkpoint", "ok-indexed", SEP.join([index(good, 40), a, b]))
    write("checkpoint", "ok-loose", SEP.join([b"", a, b]))
    missing = dict(good)
    del missing["model.layers.0.mlp.up_proj.weight"]
    write("checkpoint", "bad-tensor-not-listed", SEP.join([index(missing, 40), a, b]))
    unlisted = dict(good)
    del unlisted["lm_head.weight"]
    write("checkpoint", "ok-unlisted-file-ignored", SEP.join([index(unlisted, 40), a, b]))
    wrong = dict(good, **{"lm_head.weight": s1})
    write("checkpoint", "bad-wrong-shard", SEP.join([index(wrong, 40), a, b]))
    absent = dict(good, **{"extra": "model-00003-of-00003.safetensors"})
    write("checkpoint", "bad-shard-missing", SEP.join([index(absent, 40), a, b]))
    write("checkpoint", "bad-in-two-shards", SEP.join([b"", a, a]))
    write("checkpoint", "bad-escape", SEP.join([index(dict(good, x="../etc"), 40), a, b]))
    write("checkpoint", "bad-index-is-shard",
          SEP.join([index(dict(good, x="model.safetensors.index.json"), 40), a, b]))
    write("checkpoint", "bad-shard-invalid", SEP.join([index(good, 40), a[:-1], b]))
    write("checkpoint", "bad-empty-map", SEP.join([index({}, 0), a]))
    write("checkpoint", "bad-single-empty", b"")


if __name__ == "__main__":
    for kind in ("header", "index", "checkpoint"):
        shutil.rmtree(os.path.join(HERE, "corpus", kind), ignore_errors=True)
    headers()
    indexes()
    checkpoints()
