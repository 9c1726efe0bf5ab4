package rfbtest_test

import (
	"context"
	"fmt"
	"image"

	"github.com/kvmpki/kvmpki/rfb"
	"github.com/kvmpki/kvmpki/rfb/rfbtest"
)

// A scripted handler sends what a test needs: here a bell and clipboard
// text, then a desktop resize, before serving the framebuffer.
func ExampleNewServer() {
	srv := rfbtest.NewServer(&rfbtest.Config{
		Width: 8, Height: 8,
		Handler: func(sc *rfbtest.ServerConn) error {
			if err := sc.WriteBell(); err != nil {
				return err
			}
			if err := sc.WriteCutText([]byte("copied")); err != nil {
				return err
			}
			if err := sc.WriteDesktopSize(4, 2); err != nil {
				return err
			}
			return sc.WriteRaw(rfbtest.TestPattern(4, 2), image.Rect(0, 0, 4, 2))
		},
	})
	defer srv.Close()

	c, err := rfb.Dial(context.Background(), "tcp", srv.Addr, &rfb.Config{Security: []rfb.Security{rfb.SecurityNone}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fb := rfb.NewFramebuffer(c.Size())
	for range 4 {
		msg, err := c.ReadMessage(context.Background(), fb)
		if err != nil {
			fmt.Println(err)
			return
		}
		switch m := msg.(type) {
		case rfb.Bell:
			fmt.Println("bell")
		case *rfb.ServerCutText:
			fmt.Printf("clipboard %q\n", m.Text)
		case *rfb.FramebufferUpdate:
			for _, r := range m.Rects {
				fmt.Println("rectangle", r.Bounds(), "encoding", r.Encoding)
			}
		}
	}
	fmt.Println(fb.Image().Bounds(), fb.Image().RGBAAt(3, 1))
	// Output:
	// bell
	// clipboard "copied"
	// rectangle (0,0)-(4,2) encoding -223
	// rectangle (0,0)-(4,2) encoding 0
	// (0,0)-(4,2) {252 254 255 255}
}
