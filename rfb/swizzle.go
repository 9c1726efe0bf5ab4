package rfb

import (
	"encoding/binary"
	"math/bits"
)

// Converting 32-bit pixels whose colours are whole bytes to RGBA, for
// Image.ToRGBA, and swapping red and blue in place when a framebuffer
// changes layout. Raw updates need neither: the framebuffer keeps the
// wire's byte order (see Layout). The two byte orders, RGBX and BGRX,
// have kernels that work on 8-byte words, two pixels at a time: copyRGBX
// and copyBGRX, each returning how many leading bytes it converted.
// swizzleCopy finishes the rest, and handles any other order, a pixel at
// a time.

// swizzleCopy is swizzle from src into dst, which have the same length.
func swizzleCopy(dst, src []byte, ro, gO, bo int) {
	n := 0
	switch {
	case ro == 0 && gO == 1 && bo == 2:
		n = copyRGBX(dst, src)
	case ro == 2 && gO == 1 && bo == 0:
		n = copyBGRX(dst, src)
	}
	dst, src = dst[n:], src[n:]
	for len(dst) >= 4 && len(src) >= 4 {
		s, d := src[:4:4], dst[:4:4]
		d[0], d[1], d[2], d[3] = s[ro], s[gO], s[bo], 0xff
		dst, src = dst[4:], src[4:]
	}
}

// copyRGBXWords copies RGBX pixels from src to dst, setting the alpha
// bytes of each word with alpha, 32 bytes at a time, and returns how many
// bytes it did. alpha is a parameter, not a constant, so that the compiler
// keeps each word a single 8-byte store.
//
//go:noinline
func copyRGBXWords(dst, src []byte, alpha uint64) int {
	n := min(len(dst), len(src)) &^ 31
	for i := 0; i < n; i += 32 {
		s, d := src[i:i+32:i+32], dst[i:i+32:i+32]
		le.PutUint64(d[0:], le.Uint64(s[0:])|alpha)
		le.PutUint64(d[8:], le.Uint64(s[8:])|alpha)
		le.PutUint64(d[16:], le.Uint64(s[16:])|alpha)
		le.PutUint64(d[24:], le.Uint64(s[24:])|alpha)
	}
	return n
}

// copyBGRXWords is copyRGBXWords for BGRX pixels, swapping red and blue.
//
//go:noinline
func copyBGRXWords(dst, src []byte, alpha uint64) int {
	n := min(len(dst), len(src)) &^ 31
	for i := 0; i < n; i += 32 {
		s, d := src[i:i+32:i+32], dst[i:i+32:i+32]
		le.PutUint64(d[0:], bgrx2(le.Uint64(s[0:]), alpha))
		le.PutUint64(d[8:], bgrx2(le.Uint64(s[8:]), alpha))
		le.PutUint64(d[16:], bgrx2(le.Uint64(s[16:]), alpha))
		le.PutUint64(d[24:], bgrx2(le.Uint64(s[24:]), alpha))
	}
	return n
}

// le is the byte order of image.RGBA's memory viewed as words.
var le = binary.LittleEndian

// alpha2 sets the alpha byte of two RGBA pixels held in a little-endian
// uint64.
const alpha2 = 0xff000000_ff000000

// bgrx2 turns two BGRX pixels, held in a little-endian uint64, into RGBA.
// Reversing the eight bytes gives X1 R1 G1 B1 X0 R0 G0 B0 in memory
// order; rotating them five bytes down gives R0 G0 B0 X1 R1 G1 B1 X0,
// and the X bytes become alpha.
func bgrx2(v, alpha uint64) uint64 {
	return bits.RotateLeft64(bits.ReverseBytes64(v), 24) | alpha
}

// swizzle turns 32-bit pixels with red, green and blue at byte offsets
// ro, gO and bo into RGBA, in place. len(px) is a multiple of 4.
func swizzle(px []byte, ro, gO, bo int) { swizzleCopy(px, px, ro, gO, bo) }

func copyRGBX(dst, src []byte) int { return copyRGBXWords(dst, src, alpha2) }

func copyBGRX(dst, src []byte) int { return copyBGRXWords(dst, src, alpha2) }
