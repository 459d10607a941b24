"""Per-GPU memory of mgrpo.py's model state for Qwen2.5 0.5B / 1.5B / 7B on 1, 2 and 8 GPUs: arithmetic,
not a measurement (CPU, no weights, a second).

    python bench/memory_table.py

Parameter counts come from each model's published shape, built on the meta device. Per GPU:
  policy   fp32 weights + fp32 gradients + AdamW's two fp32 moments = 16 bytes per parameter, sharded over
           the GPUs by FSDP2 (a single process holds all of it);
  rollout  the bf16 copy that samples, 2 bytes per parameter, whole on every GPU;
  ref      the bf16 reference (only with --beta > 0), 2 bytes per parameter, sharded like the policy;
  gathered what FSDP2 holds unsharded at a time: the root (embeddings, final norm, lm_head; kept from
           the forward to the backward) and one decoder layer, in bf16.
Not counted: activations (about 2-5 GiB at --micro-tokens 16384 with checkpointing, from the H200
measurements in the README) and the KV cache of the rollouts, printed separately for --gen-batch 256
rows of prompt 200 + answer 512 + guide 50 + correction 512 tokens.
"""
import torch

SHAPES = {  # the published configs (hidden, intermediate, layers, heads, kv heads, head dim, vocab, tied)
    "Qwen2.5-0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "Qwen2.5-Math-1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                              num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "Qwen2.5-Math-7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                            num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}
GiB = 2**30


def main():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    print("| model | parameters | GPUs | policy (sharded) | rollout copy | reference (sharded) | FSDP gathered | "
          "total per GPU | + rollout KV cache |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, shape in SHAPES.items():
        with torch.device("meta"):
            model = Qwen2ForCausalLM(Qwen2Config(**shape))
        n = sum(p.numel() for p in model.parameters())
        root = n - sum(p.numel() for p in model.get_decoder().layers.parameters())
        layer = sum(p.numel() for p in model.get_decoder().layers[0].parameters())
        head_dim = shape["hidden_size"] // shape["num_attention_heads"]
        kv = 2 * shape["num_hidden_layers"] * shape["num_key_value_heads"] * head_dim * 2 * 256 * (200 + 512 + 50 + 512)
        for gpus in (1, 2, 8):
            policy, rollout, ref = 16 * n / gpus, 2 * n, 2 * n / gpus
            gathered = 2 * (root + layer) if gpus > 1 else 0
            total = policy + rollout + ref + gathered
            print(f"| {name} | {n / 1e9:.2f}B | {gpus} | {policy / GiB:.1f} GiB | {rollout / GiB:.1f} GiB | "
                  f"{ref / GiB:.1f} GiB | {gathered / GiB:.1f} GiB | **{total / GiB:.1f} GiB** | {kv / GiB:.1f} GiB |")


if __name__ == "__main__":
    main()
