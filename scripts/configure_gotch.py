#!/usr/bin/env python3
"""Make a locally configured copy of gotch for the libtorch in .deps/libtorch.

gotch ships libtch/lib.go with link flags for a CUDA install under /usr/local and compiles its large C++
wrapper (torch_api.cpp + torch_api_generated.cpp.h, ~20k lines) inside cgo, once per build cache. This
script leaves the module cache alone and instead:

  1. copies github.com/sugarme/gotch@v0.9.1 (without its examples and generator) into .deps/gotch;
  2. compiles the C++ wrapper itself, split into several translation units built in parallel, into
     .deps/gotch/libtch/libgotchwrap.so, and removes the .cpp from the cgo package;
  3. version-adaptive: a generated wrapper that does not compile against this libtorch (other versions
     than 2.1.0 rename or drop ops) is replaced by a stub that sets gotch's last error to
     "gotch: op NAME is not available in libtorch VERSION"; the list is written to BUILD_INFO.json and
     compiled into the library (gotchutil reads it at run time);
  4. patches gotch's generated Go wrappers to free the output-handle buffer they leak on every op;
  5. writes libtch/lib.go with this libtorch's link flags (CPU: torch_cpu + c10; with CUDA: torch_cuda and
     c10_cuda too, with --no-as-needed so the CUDA backend registers) and rpaths;
  6. writes go.work at the project root, replacing gotch with the configured copy.

Everything it makes is git-ignored. A second run with the same inputs does nothing.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPS = os.path.join(ROOT, ".deps")
GOTCH_VERSION = "v0.9.1"
GOTCH_MODULE = "github.com/sugarme/gotch"
OUT = os.path.join(DEPS, "gotch")
BUILD = os.path.join(DEPS, "gotch-build")


def log(msg):
    print(f"configure-gotch: {msg}", flush=True)


def die(msg):
    print(f"configure-gotch: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def gotch_source():
    # GOTCH_SRC: a copy of the unmodified gotch v0.9.1 source, for a machine without the module (the GPU
    # machine gets one from scripts/pack-device.sh: no network there, and the module zip is 59 MB).
    src = os.environ.get("GOTCH_SRC")
    if src:
        if not os.path.exists(os.path.join(src, "libtch", "torch_api_generated.cpp.h")):
            die(f"GOTCH_SRC={src} is not a gotch source tree (no libtch/torch_api_generated.cpp.h)")
        return os.path.abspath(src)
    out = subprocess.run(["go", "mod", "download", "-json", f"{GOTCH_MODULE}@{GOTCH_VERSION}"],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        die(f"go mod download {GOTCH_MODULE}@{GOTCH_VERSION} failed:\n{out.stdout}{out.stderr}")
    return json.loads(out.stdout)["Dir"]


def libtorch_dirs():
    lt = os.path.realpath(os.path.join(DEPS, "libtorch"))
    if not os.path.isdir(lt):
        die("no .deps/libtorch: run scripts/setup-libtorch.sh first")
    libdir = os.path.join(lt, "lib")
    # Debian's libtorch-dev (LIBTORCH=/usr) keeps the libraries under the multiarch directory.
    for cand in (libdir, os.path.join(lt, "lib", "x86_64-linux-gnu"), os.path.join(lt, "lib", "aarch64-linux-gnu")):
        if os.path.exists(os.path.join(cand, "libtorch_cpu.so")):
            libdir = cand
            break
    else:
        die(f"no libtorch_cpu.so under {lt}/lib")
    inc = os.path.join(lt, "include")
    api = os.path.join(inc, "torch", "csrc", "api", "include")
    if not os.path.exists(os.path.join(api, "torch", "version.h")):
        die(f"no torch headers under {inc}")
    return lt, libdir, inc, api


def torch_version(inc, api):
    # libtorch >= 2.9 keeps the defines in torch/headeronly/version.h (api's version.h only includes it),
    # with the string on a continuation line.
    text = ""
    for path in (os.path.join(api, "torch", "version.h"), os.path.join(inc, "torch", "headeronly", "version.h")):
        if os.path.exists(path):
            text += open(path).read() + "\n"
    m = re.search(r'#define TORCH_VERSION\s*(?:\\\s*)?"([^"]+)"', text)
    if m:
        return m.group(1)
    parts = [re.search(rf"#define TORCH_VERSION_{k} (\d+)", text) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(p.group(1) for p in parts if p)


def cxx_std(inc):
    """-std=c++20 for libtorch headers that require it (PyTorch >= 2.10), else c++17; GOTCH_CXXSTD overrides."""
    if os.environ.get("GOTCH_CXXSTD"):
        return "-std=" + os.environ["GOTCH_CXXSTD"]
    try:
        head = open(os.path.join(inc, "ATen", "ATen.h")).read(2000)
    except OSError:
        return "-std=c++17"
    return "-std=c++20" if "202002L" in head else "-std=c++17"


def cuda_lib_dirs(libdir):
    """Directories holding the CUDA libraries libtorch_cuda.so needs, outside libdir: its own RPATH/RUNPATH
    with $ORIGIN expanded (a pip torch points at site-packages/nvidia/*/lib that way) and, for a pip torch,
    every site-packages/nvidia/*/lib. They go into the link (-rpath-link: the linker must resolve them) and
    the run-time search path (-rpath)."""
    dirs = []
    so = os.path.join(libdir, "libtorch_cuda.so")
    dyn = subprocess.run(["readelf", "-d", so], capture_output=True, text=True).stdout
    for m in re.finditer(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[([^\]]*)\]", dyn):
        for d in m.group(1).split(":"):
            d = d.replace("$ORIGIN", libdir).replace("${ORIGIN}", libdir)
            dirs.append(os.path.normpath(d))
    nvidia = os.path.join(os.path.dirname(os.path.dirname(libdir)), "nvidia")
    if os.path.isdir(nvidia):
        dirs += sorted(os.path.join(nvidia, d, "lib") for d in os.listdir(nvidia))
    out = []
    for d in dirs:
        if os.path.isdir(d) and os.path.realpath(d) != os.path.realpath(libdir) and d not in out:
            out.append(d)
    return out


def cxx11_abi(libdir):
    """1 when libc10 exports C++11-ABI std::string symbols, else 0 (the PyPI 2.1.0 wheel)."""
    if "GOTCH_CXX11_ABI" in os.environ:
        return os.environ["GOTCH_CXX11_ABI"]
    nm = subprocess.run(["nm", "-D", "--defined-only", os.path.join(libdir, "libc10.so")],
                        capture_output=True, text=True).stdout
    # c10::detail::torchCheckFail(const char*, const char*, uint32_t, const std::string&): the std::string
    # parameter mangles as "Ss" in the old ABI and as "NSt7__cxx1112basic_string…" in the C++11 one.
    if "_ZN3c106detail14torchCheckFailEPKcS2_jRKSs" in nm:
        return "0"
    if "_ZN3c106detail14torchCheckFailEPKcS2_jRKNSt7__cxx1112basic_string" in nm:
        return "1"
    die("cannot tell the C++ ABI of libc10.so; set GOTCH_CXX11_ABI=0 or 1")


def cuda_wanted(libdir):
    """CUDA is linked when libtorch_cuda is there and all its dependencies resolve (GOTCH_CUDA=0/1 overrides)."""
    env = os.environ.get("GOTCH_CUDA", "auto")
    have = all(os.path.exists(os.path.join(libdir, n)) for n in ("libtorch_cuda.so", "libc10_cuda.so"))
    if env == "0":
        return False
    if env == "1":
        if not have:
            die("GOTCH_CUDA=1 but this libtorch has no libtorch_cuda.so")
        return True
    if not have:
        return False
    ldd = subprocess.run(["ldd", os.path.join(libdir, "libtorch_cuda.so")], capture_output=True, text=True,
                         env={**os.environ, "LD_LIBRARY_PATH": ":".join([libdir, *cuda_lib_dirs(libdir)])})
    return ldd.returncode == 0 and "not found" not in ldd.stdout


FUNC_START = re.compile(r"^[A-Za-z_][A-Za-z0-9_ \*]*?\b(atg_[A-Za-z0-9_]+)\(.*\{\s*$")


def split_functions(text):
    """Split torch_api_generated.cpp.h into (name, signature line, body lines) items."""
    lines = text.splitlines()
    funcs, i = [], 0
    while i < len(lines):
        m = FUNC_START.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j] != "}":
            j += 1
        funcs.append((m.group(1), lines[i], lines[i:j + 1]))
        i = j + 1
    return funcs


# Wrappers whose generated code passes an undefined tensor as an engaged optional<Tensor>, which
# libtorch 2.1 rejects ("Expected attn_mask dtype to be bool or to match query dtype"): an undefined
# (None) mask must become nullopt.
OPTIONAL_TENSOR_FIXES = {
    "atg_scaled_dot_product_attention": (
        "(attn_mask ? *attn_mask : torch::Tensor())",
        "((attn_mask && attn_mask->defined()) ? c10::optional<torch::Tensor>(*attn_mask) : c10::optional<torch::Tensor>())",
    ),
}


def fix_optional(name, body):
    fix = OPTIONAL_TENSOR_FIXES.get(name)
    if not fix:
        return body
    return [line.replace(fix[0], fix[1]) for line in body]


def patch_output_buffers(path):
    """gotch's generated Go wrappers pass libtorch a C.malloc(0) block for the output tensor handles and
    never free it: a leak on every op (sugarme/gotch#102), and multi-output ops write past the block's
    end. Give the block room for 16 handles and free it when the wrapper returns (the handles have been
    copied into Go tensors by then)."""
    s = open(path).read()
    n = 0
    for var in ("ptr", "ctensorPtr0"):
        old = f"{var} := (*lib.Ctensor)(unsafe.Pointer(C.malloc(0)))"
        n += s.count(old)
        s = s.replace(old, f"{var} := (*lib.Ctensor)(unsafe.Pointer(C.malloc(C.size_t(16 * unsafe.Sizeof(uintptr(0))))))\n"
                           f"  defer C.free(unsafe.Pointer({var}))")
    if n == 0:
        die(f"{path}: found no output buffers to patch; gotch's generated code has changed")
    open(path, "w").write(s)
    log(f"patched {n} output buffers in {os.path.basename(path)} (leak and overrun fix)")


def stub(sig, name, version):
    ret = sig.split(name)[0].strip()
    msg = f"gotch: op {name[len('atg_'):]} is not available in libtorch {version}"
    body = f'  torch_last_err = strdup("{msg}");'
    if ret != "void":
        body += "\n  return 0;"
    return [sig, body, "}"]


PRELUDE = '#include "torch_api.h"\n#include <torch/torch.h>\nusing namespace std;\n'


def chunk_source(funcs, stubs, version):
    out = [PRELUDE]
    spans = []  # (first line, last line, name), 1-based, in the written file
    line = PRELUDE.count("\n") + 1
    for name, sig, body in funcs:
        lines = stub(sig, name, version) if name in stubs else fix_optional(name, body)
        spans.append((line, line + len(lines) - 1, name))
        out.extend(lines)
        out.append("")
        line += len(lines) + 1
    return "\n".join(out) + "\n", spans


ERR_LINE = re.compile(r"^(?:In file included from )?([^:\s]+\.cpp):(\d+):(?:\d+:)?\s*(?:error|required from)")


def compile_unit(cxx, flags, src, obj):
    r = subprocess.run([cxx, *flags, "-c", src, "-o", obj], capture_output=True, text=True)
    return r.returncode, r.stderr


def failing_functions(stderr, src, spans):
    bad = set()
    base = os.path.basename(src)
    for line in stderr.splitlines():
        m = ERR_LINE.match(line.strip())
        if m and os.path.basename(m.group(1)) == base:
            n = int(m.group(2))
            for lo, hi, name in spans:
                if lo <= n <= hi:
                    bad.add(name)
    return bad


def main():
    src_dir = gotch_source()
    lt, libdir, inc, api = libtorch_dirs()
    version = torch_version(inc, api)
    abi = cxx11_abi(libdir)
    cuda = cuda_wanted(libdir)
    cuda_dirs = cuda_lib_dirs(libdir) if cuda else []
    cxx = os.environ.get("CXX", "g++")
    opt = os.environ.get("GOTCH_OPT", "-O2")
    flags = [cxx_std(inc), "-fPIC", opt, "-w", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-I", os.path.join(OUT, "libtch"),
             "-I", inc, "-I", api]

    me = open(os.path.abspath(__file__), "rb").read()
    key = hashlib.sha256(json.dumps([GOTCH_VERSION, lt, version, abi, cuda, cuda_dirs, cxx, flags]).encode() + me).hexdigest()
    stamp = os.path.join(OUT, ".configured")
    if os.path.exists(stamp) and open(stamp).read().strip() == key and os.path.exists(os.path.join(ROOT, "go.work")):
        log(f"gotch {GOTCH_VERSION} already configured for libtorch {version} ({'cuda' if cuda else 'cpu'})")
        return
    log(f"libtorch {version} at {lt} (C++11 ABI={abi}, {'CUDA' if cuda else 'CPU only'}); compiler {cxx} {opt}")

    # 1. the copy
    shutil.rmtree(OUT, ignore_errors=True)
    shutil.copytree(src_dir, OUT, ignore=shutil.ignore_patterns("example", "gen", "*.sh", "dune-project"))
    for d, _, files in os.walk(OUT):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    libtch = os.path.join(OUT, "libtch")
    patch_output_buffers(os.path.join(OUT, "ts", "tensor-generated.go"))

    # torch_api.h defines gotch's thread-local last error; with several translation units it must be
    # declared in the header and defined once.
    hdr = os.path.join(libtch, "torch_api.h")
    h = open(hdr).read()
    h = h.replace("thread_local char *torch_last_err = nullptr;", "extern thread_local char *torch_last_err;", 1)
    open(hdr, "w").write(h)

    api_cpp = open(os.path.join(libtch, "torch_api.cpp")).read()
    api_cpp = api_cpp.replace('#include "torch_api_generated.cpp.h"', "")
    api_cpp = api_cpp.replace('#include "torch_api.h"', '#include "torch_api.h"\nthread_local char *torch_last_err = nullptr;', 1)
    funcs = split_functions(open(os.path.join(libtch, "torch_api_generated.cpp.h")).read())
    log(f"{len(funcs)} generated wrappers")

    # 2. compile, stubbing what fails
    os.makedirs(BUILD, exist_ok=True)
    jobs = os.cpu_count() or 2
    n_chunks = max(2, 2 * jobs)
    chunks = [funcs[i::n_chunks] for i in range(n_chunks)]
    stubs = set()
    # The wrappers that failed against this libtorch last time are stubbed from the start.
    known = os.path.join(BUILD, "stubs-" + hashlib.sha256(f"{lt} {version} {flags}".encode()).hexdigest()[:16] + ".json")
    if os.path.exists(known):
        stubs |= set(json.load(open(known)))
    for n in os.environ.get("GOTCH_STUB", "").split(","):
        if n.strip():
            stubs.add("atg_" + n.strip())
    units = {"torch_api": None}
    units.update({f"generated_{k}": c for k, c in enumerate(chunks)})

    def build(name):
        src = os.path.join(BUILD, name + ".cpp")
        obj = os.path.join(BUILD, name + ".o")
        spans = []
        if units[name] is None:
            text = api_cpp
        else:
            text, spans = chunk_source(units[name], stubs, version)
        open(src, "w").write(text)
        # An object compiled before from the same source with the same compiler and flags is reused.
        key = hashlib.sha256(json.dumps([cxx, flags, text]).encode()).hexdigest()
        if os.path.exists(obj) and os.path.exists(obj + ".key") and open(obj + ".key").read() == key:
            return name, 0, "", src, spans
        rc, err = compile_unit(cxx, flags, src, obj)
        if rc == 0:
            open(obj + ".key", "w").write(key)
        return name, rc, err, src, spans

    pending = list(units)
    for attempt in range(4):
        log(f"compiling {len(pending)} translation units with {jobs} jobs (pass {attempt + 1}; takes minutes)")
        with ThreadPoolExecutor(jobs) as ex:
            results = list(ex.map(build, pending))
        failed = []
        for name, rc, err, src, spans in results:
            if rc == 0:
                continue
            bad = failing_functions(err, src, spans)
            if not bad - stubs:
                log_path = os.path.join(BUILD, name + ".log")
                open(log_path, "w").write(err)
                die(f"{name}.cpp does not compile against libtorch {version} and no wrapper could be "
                    f"blamed; see {log_path}:\n" + "\n".join(err.splitlines()[:30]))
            stubs |= bad
            failed.append(name)
        if not failed:
            break
        log(f"stubbing {len(stubs)} wrappers that do not compile against libtorch {version}")
        pending = failed
    else:
        die("wrappers still fail after 4 passes")

    json.dump(sorted(stubs), open(known, "w"))
    info = {"gotch": GOTCH_VERSION, "libtorch": version, "libtorch_dir": lt, "cuda": cuda, "cxx11_abi": abi,
            "stubbed_ops": sorted(s[len("atg_"):] for s in stubs), "generated_wrappers": len(funcs)}
    info_json = json.dumps(info, sort_keys=True)
    ext = os.path.join(BUILD, "build_info.cpp")
    open(ext, "w").write('extern "C" const char *gotchsafety_build_info(void) { return ' +
                         json.dumps(info_json) + "; }\n")
    rc, err = compile_unit(cxx, flags, ext, os.path.join(BUILD, "build_info.o"))
    if rc:
        die(err)

    # 3. the shared library
    libs = ["-ltorch_cpu", "-lc10"]
    if cuda:
        libs = ["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"] + libs
        # a pip torch's CUDA libraries (site-packages/nvidia/*/lib): the linker must find them
        # (-rpath-link), and so must the loader (-rpath), whatever path the program is started from
        libs = [f for d in cuda_dirs for f in (f"-Wl,-rpath-link,{d}", f"-Wl,-rpath,{d}")] + libs
    objs = [os.path.join(BUILD, n + ".o") for n in units] + [os.path.join(BUILD, "build_info.o")]
    so = os.path.join(libtch, "libgotchwrap.so")
    r = subprocess.run([cxx, "-shared", "-o", so, *objs, f"-L{libdir}", f"-Wl,-rpath,{libdir}", *libs],
                       capture_output=True, text=True)
    if r.returncode:
        die("linking libgotchwrap.so failed:\n" + r.stderr)

    # 4. cgo package without C++ sources, linked to the library
    for f in ("torch_api.cpp", "torch_api_generated.cpp.h"):
        os.rename(os.path.join(libtch, f), os.path.join(libtch, f + ".orig"))
    ld = [f"-L{libtch}", "-lgotchwrap", f"-Wl,-rpath,{libtch}", f"-L{libdir}", f"-Wl,-rpath,{libdir}", *libs,
          "-lstdc++"]
    open(os.path.join(libtch, "lib.go"), "w").write(
        "// Code generated by scripts/configure_gotch.py for libtorch " + version + "; DO NOT EDIT.\n\n"
        "package libtch\n\n"
        f"// #cgo CFLAGS: -I${{SRCDIR}} -O2 -D_GLIBCXX_USE_CXX11_ABI={abi}\n"
        f"// #cgo LDFLAGS: {' '.join(ld)}\n"
        'import "C"\n')
    json.dump(info, open(os.path.join(OUT, "BUILD_INFO.json"), "w"), indent=1, sort_keys=True)

    # 5. go.work
    gover = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()
    gover = re.sub(r"^go", "", gover)
    open(os.path.join(ROOT, "go.work"), "w").write(
        f"// Generated by scripts/configure_gotch.py: builds against the configured gotch in .deps/gotch.\n"
        f"go {gover}\n\nuse .\n\nreplace {GOTCH_MODULE} {GOTCH_VERSION} => ./.deps/gotch\n")
    open(stamp, "w").write(key + "\n")
    log(f"done: libtorch {version}, {len(stubs)} of {len(funcs)} wrappers stubbed"
        + (f" ({', '.join(sorted(info['stubbed_ops'])[:8])}{'…' if len(stubs) > 8 else ''})" if stubs else ""))


if __name__ == "__main__":
    main()
