// Package testbuild holds the builders the module's tests share: model directories (config.json and
// safetensors weights from a key listing), safetensors files, torch.save zip archives and hostile
// image headers. Only tests import it (TestImportLayering in the root package keeps it so); it imports the
// standard library only.
package testbuild

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
)

// Tensor is one tensor of a safetensors file to write.
type Tensor struct {
	Name  string
	DType string // safetensors spelling: F32, F16, BF16, F64, I64, ...
	Shape []int64
	Data  []byte // little-endian elements
}

// Safetensors lays the tensors out back to back in a safetensors file, the header padded with spaces
// to a multiple of 8 bytes. edit, when non-nil, may change the header entries (name → {dtype, shape,
// data_offsets}, or "__metadata__") before they are written, to build malformed files.
func Safetensors(tensors []Tensor, edit func(hdr map[string]map[string]any)) ([]byte, error) {
	hdr := map[string]map[string]any{}
	var data []byte
	for _, x := range tensors {
		hdr[x.Name] = map[string]any{"dtype": x.DType, "shape": x.Shape, "data_offsets": []int{len(data), len(data) + len(x.Data)}}
		data = append(data, x.Data...)
	}
	if edit != nil {
		edit(hdr)
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	return append(append(out, h...), data...), nil
}

// PNGWithHeader returns a PNG signature, an IHDR chunk declaring w×h 8-bit RGB, a tiny IDAT and
// IEND: a well-formed header whose pixel data is nowhere near what it declares.
func PNGWithHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(data))))
		c := append([]byte(typ), data...)
		b.Write(c)
		b.Write(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(c)))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit truecolour
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

// JPEGWithHeader returns SOI and a baseline SOF0 declaring w×h with three components, then EOI.
func JPEGWithHeader(w, h uint16) []byte {
	b := []byte{0xff, 0xd8, 0xff, 0xc0, 0, 17, 8}
	b = binary.BigEndian.AppendUint16(b, h)
	b = binary.BigEndian.AppendUint16(b, w)
	b = append(b, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1)
	return append(b, 0xff, 0xd9)
}
