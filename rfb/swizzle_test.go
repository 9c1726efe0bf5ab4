package rfb

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
)

// swizzleReference converts one pixel at a time: what every kernel must
// produce.
func swizzleReference(src []byte, ro, gO, bo int) []byte {
	out := make([]byte, len(src)&^3)
	for i := 0; i+4 <= len(src); i += 4 {
		out[i], out[i+1], out[i+2], out[i+3] = src[i+ro], src[i+gO], src[i+bo], 0xff
	}
	return out
}

// TestSwizzle checks the conversion of 32-bit pixels in every byte order
// against the pixel-at-a-time reference, copying and in place, over
// lengths around the kernels' block sizes and at every alignment of the
// buffers, with random padding bytes (servers do not always send 0).
func TestSwizzle(t *testing.T) {
	t.Parallel()
	orders := []struct {
		name       string
		ro, gO, bo int
	}{
		{"RGBX", 0, 1, 2}, {"BGRX", 2, 1, 0}, {"XRGB", 1, 2, 3}, {"XBGR", 3, 2, 1}, {"GRBX", 1, 0, 2},
	}
	for i, o := range orders {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, uint64(i)))
			for _, pixels := range []int{0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 257} {
				for align := range 16 {
					buf := make([]byte, align+4*pixels)
					src := buf[align:]
					for i := range src {
						src[i] = byte(rng.Uint32())
					}
					want := swizzleReference(src, o.ro, o.gO, o.bo)
					name := fmt.Sprintf("%d pixels at +%d", pixels, align)

					dst := make([]byte, len(src)+align)[align:]
					swizzleCopy(dst, src, o.ro, o.gO, o.bo)
					assert.Equal(t, want, dst, "copy, %s", name)

					swizzle(src, o.ro, o.gO, o.bo)
					assert.Equal(t, want, src, "in place, %s", name)
				}
			}
		})
	}
}

// TestSwizzleKernels checks that the word kernels agree with the
// reference on what they convert, and
// convert all but a short tail.
func TestSwizzleKernels(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	kernels := []struct {
		name       string
		f          func(dst, src []byte) int
		ro, gO, bo int
		tail       int // the most bytes a kernel may leave
	}{
		{"copyRGBX", copyRGBX, 0, 1, 2, 31},
		{"copyBGRX", copyBGRX, 2, 1, 0, 31},
		{"copyRGBXWords", func(d, s []byte) int { return copyRGBXWords(d, s, alpha2) }, 0, 1, 2, 31},
		{"copyBGRXWords", func(d, s []byte) int { return copyBGRXWords(d, s, alpha2) }, 2, 1, 0, 31},
	}
	for _, k := range kernels {
		for _, n := range []int{0, 4, 28, 32, 60, 64, 68, 96, 124, 128, 132, 1020, 4096, 4100} {
			for _, align := range []int{0, 1, 4, 8, 13} {
				src := make([]byte, n+align)[align:]
				for i := range src {
					src[i] = byte(rng.Uint32())
				}
				want := swizzleReference(src, k.ro, k.gO, k.bo)
				dst := make([]byte, n+align)[align:]
				done := k.f(dst, src)
				assert.LessOrEqual(t, n-done, k.tail, "%s of %d bytes at +%d did %d", k.name, n, align, done)
				assert.Equal(t, want[:done], dst[:done], "%s of %d bytes at +%d", k.name, n, align)
				assert.Equal(t, make([]byte, n-done), dst[done:], "%s wrote past what it reported", k.name)
			}
		}
	}
}
