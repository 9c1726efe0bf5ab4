package rfb_test

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/rfb"
)

// desktopSizeFlood is one FramebufferUpdate of n DesktopSize rectangles
// alternating between w x h and w x (h-1), each followed by a 1x1 Raw
// rectangle when withRaw is set (which makes every size take effect).
func desktopSizeFlood(n, w, h int, withRaw bool) []byte {
	var rects [][]byte
	for i := range n {
		rects = append(rects, rectHeader(0, 0, w, h-i%2, rfb.EncodingDesktopSize))
		if withRaw {
			rects = append(rects, append(rectHeader(0, 0, 1, 1, rfb.EncodingRaw), 1, 2, 3, 4))
		}
	}
	return fbUpdate(rects...)
}

// TestDesktopSizeFloodAllocation is the hostile server of issue 11, item
// 4: one 484-byte update of 40 DesktopSize rectangles alternating
// 7680x4320 and 7680x4319 made the client allocate 5 GiB. The bytes
// allocated while applying such an update must stay within one
// framebuffer of the largest size announced (plus slack), whether the
// sizes follow each other or are interleaved with pixels that force each
// one to take effect.
func TestDesktopSizeFloodAllocation(t *testing.T) {
	tests := []struct {
		name      string
		w, h      int
		maxPixels int
		withRaw   bool
	}{
		{name: "issue case 8K, default limit", w: 7680, h: 4320},
		{name: "8K with pixels between sizes", w: 7680, h: 4320, withRaw: true},
		{name: "1080p limit", w: 1920, h: 1080, maxPixels: 1920 * 1080},
		{name: "1080p limit with pixels between sizes", w: 1920, h: 1080, maxPixels: 1920 * 1080, withRaw: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := desktopSizeFlood(40, tc.w, tc.h, tc.withRaw)
			if !tc.withRaw {
				require.Len(t, msg, 484, "the issue's update")
			}
			cfg := noneConfig()
			cfg.MaxFramebufferPixels = tc.maxPixels
			c, err := scriptedClient(msg, cfg)
			require.NoError(t, err)
			fb := rfb.NewFramebuffer(c.Size())

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			u, err := c.ReadMessage(t.Context(), fb)
			runtime.ReadMemStats(&after)
			require.NoError(t, err)

			allocated := after.TotalAlloc - before.TotalAlloc
			frame := uint64(tc.w * tc.h * 4)
			assert.LessOrEqual(t, allocated, frame+frame/8, "bytes allocated for one update (one frame is %d)", frame)
			wantRects := 40
			if tc.withRaw {
				wantRects = 80
			}
			assert.Len(t, u.(*rfb.FramebufferUpdate).Rects, wantRects, "every rectangle is reported")
			w, h := c.Size()
			assert.Equal(t, [2]int{tc.w, tc.h - 1}, [2]int{w, h}, "the last size wins")
			assert.Equal(t, [2]int{tc.w, tc.h - 1}, [2]int{fb.Image().Bounds().Dx(), fb.Image().Bounds().Dy()})
		})
	}
}
