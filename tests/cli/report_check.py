"""`frugal report --json --svg DIR` with no other arguments: every section's figures exist and
make sense (after <= before, the pool fails no more than first-fit, the leak is found), and the
pictures are written."""
import os
import sys
import xml.dom.minidom

from report_util import check, finish, fresh_dir, run_json

program, work = sys.argv[1], fresh_dir(sys.argv[2])
extra = sys.argv[3:]  # options a slow (sanitizer) build adds to keep the run short
svg_dir = os.path.join(work, "svg")
r = run_json(program, "report", "--svg", svg_dir, *extra)

for key in ("scenario", "weights", "fragmentation", "kv", "batching", "leaks", "total"):
    check(key in r, f"section {key} present")

s = r["scenario"]
check(s["model"] == "llama-3-8b", "default model is llama-3-8b")
check(s["gpu_memory"] == (24 if "--gpu-memory" in extra else 80) << 30, "the GPU's size")
check(s["workload"] == "sharegpt", "default workload is sharegpt")

# 1. weights
w = r["weights"]
check(w["synthetic"] is True, "synthetic weights by default")
check(0 < w["bytes_after"] < w["bytes_before"], "planned weights are smaller than FP16")
check(w["bytes_before"] == 2 * s["parameters"], "FP16 bytes are 2 x parameters")
check(w["bytes_freed"] == w["bytes_before"] - w["bytes_after"], "weights: freed = before - after")
check(w["worst_sqnr_db"] >= w["min_sqnr_db"], "every planned matrix meets the bound")
check(0 < w["bits_per_weight"] < 16, "bits per weight below 16")
names = [t["name"] for t in w["tensors"]]
for expected in ("self_attn.q_proj", "mlp.down_proj", "embed_tokens", "lm_head"):
    check(expected in names, f"weights: matrix {expected} planned")
for t in w["tensors"]:
    check(t["bytes_after"] <= t["bytes_before"], f"{t['name']}: after <= before")
    check(t["sampled_rows"] <= w["sample_rows"], f"{t['name']}: subsampled")
    check(t["kept"] or t["sqnr_db"] >= w["min_sqnr_db"], f"{t['name']}: meets the bound")
check(len(w["error_vs_bits"]) >= 10, "error-versus-bits curve has the formats")
check(any(c["meets_bound"] for c in w["error_vs_bits"]), "some format meets the bound")

# 2. fragmentation
f = r["fragmentation"]
ff, pool = f["first_fit"], f["pool"]
check(f["events"] > 1000, "trace has events")
check(pool["failed_allocations"] <= ff["failed_allocations"],
      "frugal pool failures <= first-fit failures")
check(ff["peak_bytes_in_use"] > 0 and pool["peak_bytes_in_use"] > 0, "replays hold memory")
check(pool["peak_bytes_reserved"] <= f["cap_bytes"], "pool stays under the cap")
check(pool["peak_bytes_reserved"] >= pool["peak_bytes_in_use"], "pool reserved >= in use")
check(f["bytes_freed"] == ff["uncapped_peak_bytes_reserved"] - pool["uncapped_peak_bytes_reserved"],
      "fragmentation: freed = device first-fit needs - device the pool needs (signed)")
check(pool["uncapped_peak_bytes_reserved"] <= ff["uncapped_peak_bytes_reserved"],
      "the pool needs no more device than first-fit")
check(pool["uncapped_peak_bytes_reserved"] >= pool["peak_bytes_in_use"], "needed >= in use")
check(len(pool["timeline"]) > 10, "replay timeline recorded")

# 3. KV cache
kv = r["kv"]
st, pg = kv["static"], kv["paged"]
check(0 <= pg["waste"] < st["waste"] <= 1, "paged KV wastes less than static")
check(pg["empty_bytes"] <= st["empty_bytes"], "paged empty KV <= static")
check(pg["max_concurrent"] > st["max_concurrent"] > 0, "paging runs more sequences at once")
check(pg["peak_held_bytes"] <= pg["pool_bytes"], "paged KV stays in its pool")
check(kv["kv_bytes_per_token"] == 131072, "llama-3-8b keeps 128 KiB of KV per token")
check(st["reserved_bytes"] == st["sequences"] * kv["max_len"] * kv["kv_bytes_per_token"],
      "static reserves max_len per sequence")

# 4. batching
b = r["batching"]
bs, bd = b["static"], b["dynamic"]
for run in (bs, bd):
    check(run["finished"] + run["rejected"] == b["requests"], "every request accounted for")
    check(run["peak_memory_bytes"] <= s["gpu_memory"], "peak memory within the GPU")
check(bd["mean_concurrent_saturated"] > bs["mean_concurrent_saturated"],
      "dynamic batching runs more sequences")
check(bd["output_tokens_per_step"] > bs["output_tokens_per_step"],
      "dynamic batching samples more tokens per step")
check(bd["mean_workspace_bytes"] <= bs["peak_workspace_bytes"], "workspace follows the batch")
check(bd["leaked_pages"] == 0, "no KV pages leaked")

# 5. leaks
l = r["leaks"]
check(l["found"] is True, "the tracker names the retained intermediate")
check(l["naive"]["top_tag"] == l["retained_tag"], "top tag is the retained one")
check(l["naive"]["outstanding_bytes"] == l["steps"] * l["bytes_per_step"],
      "the leak holds one logits copy per step")
check(l["retained_tag"] in l["naive"]["leak_report"], "leak report names the tag")
check(l["frugal"]["outstanding_bytes"] == 0, "the fixed loop holds nothing")
check(l["frugal"]["peak_bytes_reserved"] < l["naive"]["peak_bytes_reserved"],
      "the fixed loop reserves less")

# total
t = r["total"]
check(t["bytes_freed"] == sum(t["freed"].values()), "total = sum of the sections it counts")
check(sorted(t["freed"]) == ["kv", "weights", "workspace"], "total: weights, KV, workspace")
check(t["bytes_freed"] <= s["gpu_memory"], "the total freed never exceeds the GPU")
check(t["freed"]["weights"] == w["bytes_freed"], "total counts the weights")
check(t["concurrency_after"] > t["concurrency_before"], "frugal gains concurrency")
check(t["frugal_run"]["weight_bytes"] == w["bytes_after"], "frugal run uses the planned weights")
check(t["concurrency_after"] >= bd["max_concurrent"], "smaller weights do not lose concurrency")

# pictures
for name in ("memory_over_time.svg", "kv_static_vs_paged.svg", "format_error_vs_bits.svg"):
    path = os.path.join(svg_dir, name)
    check(os.path.isfile(path), f"{name} written")
    if os.path.isfile(path):
        try:
            doc = xml.dom.minidom.parse(path)
            check(doc.documentElement.tagName == "svg", f"{name} is SVG")
        except Exception as e:  # noqa: BLE001 - any parse failure is a failed check
            check(False, f"{name} parses as XML ({e})")
check(len(r.get("pictures", [])) == 3, "pictures listed in the JSON")

finish("report")
