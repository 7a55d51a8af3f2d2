"""What llama.cpp's quantizer says about the tensors it wrote, read from its log."""

from __future__ import annotations

from llmbuild.adapters.llama_cpp_tools import read_quantize_log

# lines as llama.cpp's llama_model_quantize logs them (SmolLM2-135M, Q5_K_M)
LOG = """\
llama_model_loader: loaded meta data with 29 key-value pairs and 272 tensors from in.gguf (version GGUF V3 (latest))
warning: blk.4.attn_q.weight                  - ncols    576 not divisible by 256 (required for type    q5_K) -> falling back to    q5_1
warning: blk.5.attn_v.weight                  - ncols    576 not divisible by 256 (required for type    q6_K) -> falling back to    q8_0
warning: blk.6.attn_q.weight                  - ncols    576 not divisible by 256 (required for type    q5_K) -> falling back to    q5_1
[   1/ 272] output_norm.weight                   - [   576,      1,      1,      1], type =    f32, size =    0.002 MiB
[   2/ 272] token_embd.weight                    - [   576,  49152,      1,      1], type =    f16, converting to q8_0 .. size =    54.00 MiB ->    28.69 MiB
[   3/ 272] blk.4.attn_q.weight                  - [   576,    576,      1,      1], type =    f16, converting to q5_1 .. size =     0.63 MiB ->     0.24 MiB
[   4/ 272] blk.5.attn_v.weight                  - [   576,    192,      1,      1], type =    f16, converting to q8_0 .. size =     0.21 MiB ->     0.11 MiB
[   5/ 272] blk.6.attn_q.weight                  - [   576,    576,      1,      1], type =    f16, converting to q5_1 .. size =     0.63 MiB ->     0.24 MiB
[   6/ 272] blk.0.ffn_down.weight                - [  1536,    576,      1,      1], type =    f16, converting to q6_K .. size =     1.69 MiB ->     0.69 MiB
llama_model_quantize_impl: WARNING: 3 of 272 tensor(s) required fallback quantization
"""


def test_written_types_and_fallbacks_are_counted():
    read = read_quantize_log(LOG)
    assert read.types == {"q8_0": 2, "q5_1": 2, "q6_K": 1} and read.quantized == 5
    assert read.fallback == {"q5_1": 2, "q8_0": 1}
    assert read.to_json() == {"quantized_tensors": 5, "types": read.types, "fallback": read.fallback}


def test_a_model_whose_rows_fit_has_no_fallback():
    read = read_quantize_log("[   2/ 4] blk.0.attn_q.weight - [ 256, 256, 1, 1], type = f16, converting to q4_K .. size = 1 MiB\n")
    assert read.fallback == {} and read.quantized == 1
