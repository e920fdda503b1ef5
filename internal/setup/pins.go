package setup

// AltTorchVersion is the other libtorch the project tests and benchmarks (make test-libtorch, make
// bench): the newest PyTorch on PyPI when it was pinned. Its wheel, like the default's, is pinned by
// sha256 in [PinnedWheels].
const AltTorchVersion = "2.15.0"

// PinnedWheels maps the file name of each wheel the supported libtorch versions ([DefaultTorchVersion],
// [AltTorchVersion]) are provisioned from, for linux x86_64 and CPython 3.11, to its sha256: the torch
// wheels and the NVIDIA runtime wheels (and the cuda-toolkit metadata wheel) their libtorch_cpu.so
// needs. [Index.Fetch] checks a pinned file against this hash, not only against the one the index
// publishes, and refuses an index whose hash differs, so a changed or substituted file on the index
// (or a mirror) cannot slip in. Files not listed here (another version, another architecture) are
// checked against the index's sha256 alone.
//
// The hashes are those of the files fetched from pypi.org (checked against its listing then) on
// 2026-12-01.
var PinnedWheels = map[string]string{
	// 2.1.0
	"torch-2.1.0-cp311-cp311-manylinux1_x86_64.whl":                    "2224622407ca52611cbc5b628106fde22ed8e679031f5a99ce286629fc696128",
	"nvidia_cuda_runtime_cu12-12.1.105-py3-none-manylinux1_x86_64.whl": "6e258468ddf5796e25f1dc591a31029fa317d97a0a94ed93468fc86301d61e40",
	"nvidia_cuda_cupti_cu12-12.1.105-py3-none-manylinux1_x86_64.whl":   "e54fde3983165c624cb79254ae9818a456eb6e87a7fd4d56a2352c24ee542d7e",
	// 2.15.0
	"torch-2.15.0-cp311-cp311-manylinux_2_28_x86_64.whl":                                  "48c2d861134c0b5697c7602cb5ffa68f62a2989fdcd1717e593356f67996ca1e",
	"cuda_toolkit-13.2.2-py2.py3-none-any.whl":                                            "d12edc1aad1356236a2ee10c0d794b1aff5d3e79bfeca54867c3bb8e5afd87b0",
	"nvidia_cuda_runtime-13.2.86-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl": "3498247680dfddce31bad102af7e3e26fc795342a3cac64722bb0fa95e7f60f0",
	"nvidia_cuda_cupti-13.2.86-py3-none-manylinux_2_25_x86_64.whl":                        "8fa29f15dd8336181f961764d9d95236fc6b931dd0c8fcf8cd70aab0c310b586",
}
