#!/usr/bin/env python3
"""Instructions per thread per time step of the WKV kernels' loops, from their sm_90 SASS.

kernels/wkv_schedule.cpp models each launch partly by its instruction issue; its per-step counts
come from here. Reads the cubin the build compiles for the kernel resource report
(BUILD/kernels/resources_sm_90/wkv_cuda.cubin, kernels/CMakeLists.txt) and disassembles it with
cuobjdump (the CUDA toolkit's, or the copy the venv's triton ships). For each kernel, its longest
loop (a backward branch): instructions, global loads, and instructions per step, a step being the
loads one step makes (2: k, v for the forward walks; 6: three states, k, v and dy for the reverse
walks; 3 or 5 floats a chunk for the scans; 2 for the chunk sums).

    scripts/wkv_sass_steps.py [BUILD_DIR]      (default: build)
"""
import glob
import os
import re
import shutil
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build")
cubin = os.path.join(build, "kernels", "resources_sm_90", "wkv_cuda.cubin")
if not os.path.exists(cubin):
    sys.exit(f"wkv_sass_steps: {cubin} not found (a build with nvcc makes it)")
tool = shutil.which("cuobjdump", path="/usr/local/cuda/bin") or next(
    iter(glob.glob(os.path.join(root, ".venv/lib/python3*/site-packages/triton/backends/nvidia/bin/cuobjdump"))), None)
if tool is None:
    sys.exit("wkv_sass_steps: no cuobjdump (neither /usr/local/cuda/bin nor the venv's triton has one)")
sass = subprocess.run([tool, "-sass", cubin], check=True, capture_output=True, text=True).stdout

# Loads per step (or per chunk) of each kernel's main loop, by kernel name.
loads_per_step = [
    ("backward_adjoint_kernel", 6), ("backward_kernel", 6), ("backward_finish_kernel", 2),
    ("backward_adjoint_scan_kernel", 5), ("backward_state_scan_kernel", 3), ("chunk_scan_kernel", 3),
    ("parameter_grads_kernel", None), ("", 2),
]

functions = re.split(r"\n\s*Function : ", sass)[1:]
print(f"{'kernel':60} {'loop':>5} {'loads':>5} {'steps':>5} {'instr/step':>10}")
for f in functions:
    name = f.split("\n", 1)[0].strip()
    demangled = subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip() or name
    short = demangled.replace("(anonymous namespace)::", "").split("(")[0]
    short = re.sub(r"^(void )?[\w:]*::", "", short)
    instructions = [(int(m.group(1), 16), m.group(2))
                    for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", f)]
    at = {a: i for i, (a, _) in enumerate(instructions)}
    best = None
    for i, (a, text) in enumerate(instructions):
        m = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", text)
        if m and int(m.group(1), 16) < a and int(m.group(1), 16) in at:
            body = instructions[at[int(m.group(1), 16)]:i + 1]
            if best is None or len(body) > len(best):
                best = body
    if best is None:
        continue
    loads = sum(1 for _, t in best if re.search(r"\bLDG\b", t))
    per = next(n for key, n in loads_per_step if key in short)
    if per is None or loads == 0:
        continue
    steps = loads / per
    print(f"{short[:60]:60} {len(best):5d} {loads:5d} {steps:5.0f} {len(best) / steps:10.1f}")
