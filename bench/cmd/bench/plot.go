package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strings"
)

// A tiny plotter on the standard library: lines, markers and a 5×7 bitmap
// font (upper case, digits, a little punctuation), enough for two panels
// with a log-scale x axis.

// font5x7 holds 5 columns per glyph, bit 0 at the top (the classic HD44780
// layout).
var font5x7 = map[rune][5]byte{
	' ': {0, 0, 0, 0, 0}, '0': {0x3E, 0x51, 0x49, 0x45, 0x3E}, '1': {0x00, 0x42, 0x7F, 0x40, 0x00},
	'2': {0x42, 0x61, 0x51, 0x49, 0x46}, '3': {0x21, 0x41, 0x45, 0x4B, 0x31}, '4': {0x18, 0x14, 0x12, 0x7F, 0x10},
	'5': {0x27, 0x45, 0x45, 0x45, 0x39}, '6': {0x3C, 0x4A, 0x49, 0x49, 0x30}, '7': {0x01, 0x71, 0x09, 0x05, 0x03},
	'8': {0x36, 0x49, 0x49, 0x49, 0x36}, '9': {0x06, 0x49, 0x49, 0x29, 0x1E}, 'A': {0x7E, 0x11, 0x11, 0x11, 0x7E},
	'B': {0x7F, 0x49, 0x49, 0x49, 0x36}, 'C': {0x3E, 0x41, 0x41, 0x41, 0x22}, 'D': {0x7F, 0x41, 0x41, 0x22, 0x1C},
	'E': {0x7F, 0x49, 0x49, 0x49, 0x41}, 'F': {0x7F, 0x09, 0x09, 0x09, 0x01}, 'G': {0x3E, 0x41, 0x49, 0x49, 0x7A},
	'H': {0x7F, 0x08, 0x08, 0x08, 0x7F}, 'I': {0x00, 0x41, 0x7F, 0x41, 0x00}, 'J': {0x20, 0x40, 0x41, 0x3F, 0x01},
	'K': {0x7F, 0x08, 0x14, 0x22, 0x41}, 'L': {0x7F, 0x40, 0x40, 0x40, 0x40}, 'M': {0x7F, 0x02, 0x0C, 0x02, 0x7F},
	'N': {0x7F, 0x04, 0x08, 0x10, 0x7F}, 'O': {0x3E, 0x41, 0x41, 0x41, 0x3E}, 'P': {0x7F, 0x09, 0x09, 0x09, 0x06},
	'Q': {0x3E, 0x41, 0x51, 0x21, 0x5E}, 'R': {0x7F, 0x09, 0x19, 0x29, 0x46}, 'S': {0x46, 0x49, 0x49, 0x49, 0x31},
	'T': {0x01, 0x01, 0x7F, 0x01, 0x01}, 'U': {0x3F, 0x40, 0x40, 0x40, 0x3F}, 'V': {0x1F, 0x20, 0x40, 0x20, 0x1F},
	'W': {0x3F, 0x40, 0x38, 0x40, 0x3F}, 'X': {0x63, 0x14, 0x08, 0x14, 0x63}, 'Y': {0x07, 0x08, 0x70, 0x08, 0x07},
	'Z': {0x61, 0x51, 0x49, 0x45, 0x43}, '.': {0x00, 0x60, 0x60, 0x00, 0x00}, ',': {0x00, 0x50, 0x30, 0x00, 0x00},
	':': {0x00, 0x36, 0x36, 0x00, 0x00}, '-': {0x08, 0x08, 0x08, 0x08, 0x08}, '(': {0x00, 0x1C, 0x22, 0x41, 0x00},
	')': {0x00, 0x41, 0x22, 0x1C, 0x00}, '/': {0x20, 0x10, 0x08, 0x04, 0x02}, '%': {0x23, 0x13, 0x08, 0x64, 0x62},
	'=': {0x14, 0x14, 0x14, 0x14, 0x14}, '+': {0x08, 0x08, 0x3E, 0x08, 0x08}, '<': {0x08, 0x14, 0x22, 0x41, 0x00},
	'>': {0x00, 0x41, 0x22, 0x14, 0x08}, '×': {0x22, 0x14, 0x08, 0x14, 0x22}, '_': {0x40, 0x40, 0x40, 0x40, 0x40},
}

type canvas struct{ img *image.RGBA }

func newCanvas(w, h int) *canvas {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 0xFF
	}
	return &canvas{img}
}

func (c *canvas) dot(x, y, size int, col color.Color) {
	for dx := 0; dx < size; dx++ {
		for dy := 0; dy < size; dy++ {
			c.img.Set(x+dx-size/2, y+dy-size/2, col)
		}
	}
}

// line draws from (x0,y0) to (x1,y1), width w; dash > 0 draws dashes.
func (c *canvas) line(x0, y0, x1, y1 float64, w int, col color.Color, dash int) {
	n := int(math.Max(math.Abs(x1-x0), math.Abs(y1-y0))) + 1
	for i := 0; i <= n; i++ {
		if dash > 0 && (i/dash)%2 == 1 {
			continue
		}
		t := float64(i) / float64(n)
		c.dot(int(math.Round(x0+(x1-x0)*t)), int(math.Round(y0+(y1-y0)*t)), w, col)
	}
}

// text writes s at (x,y) (top left), scale s pixels per font pixel.
func (c *canvas) text(x, y int, s string, scale int, col color.Color) {
	for _, r := range strings.ToUpper(s) {
		g, ok := font5x7[r]
		if !ok {
			g = font5x7[' ']
		}
		for cx := 0; cx < 5; cx++ {
			for cy := 0; cy < 7; cy++ {
				if g[cx]>>cy&1 == 1 {
					for i := 0; i < scale; i++ {
						for j := 0; j < scale; j++ {
							c.img.Set(x+cx*scale+i, y+cy*scale+j, col)
						}
					}
				}
			}
		}
		x += 6 * scale
	}
}

func textWidth(s string, scale int) int { return len([]rune(s)) * 6 * scale }

type series struct {
	name   string
	col    color.Color
	dash   int
	points [][2]float64 // x (keys), y
}

// panel draws one chart into the rectangle r: log10 x from xmin to xmax,
// linear y from 0 to ymax.
func (c *canvas) panel(r image.Rectangle, title, xlabel, ylabel string, xs []float64, ymax float64, ss []series, hlines []series, legendBottom bool) {
	black, grey := color.RGBA{0, 0, 0, 255}, color.RGBA{220, 220, 220, 255}
	left, right, top, bottom := float64(r.Min.X+70), float64(r.Max.X-20), float64(r.Min.Y+50), float64(r.Max.Y-60)
	xmin, xmax := math.Log10(xs[0])-0.15, math.Log10(xs[len(xs)-1])+0.15
	px := func(x float64) float64 { return left + (math.Log10(x)-xmin)/(xmax-xmin)*(right-left) }
	py := func(y float64) float64 { return bottom - y/ymax*(bottom-top) }
	c.text(r.Min.X+(r.Dx()-textWidth(title, 2))/2, r.Min.Y+12, title, 2, black)
	// grid and y ticks
	step := niceStep(ymax / 5)
	for y := 0.0; y <= ymax+1e-9; y += step {
		c.line(left, py(y), right, py(y), 1, grey, 0)
		label := trimFloat(y)
		c.text(int(left)-8-textWidth(label, 2), int(py(y))-7, label, 2, black)
	}
	for _, x := range xs {
		c.line(px(x), top, px(x), bottom, 1, grey, 0)
		label := fmt.Sprintf("%d", int(x))
		c.text(int(px(x))-textWidth(label, 2)/2, int(bottom)+8, label, 2, black)
	}
	c.line(left, bottom, right, bottom, 2, black, 0)
	c.line(left, top, left, bottom, 2, black, 0)
	c.text(int(left+right)/2-textWidth(xlabel, 2)/2, int(bottom)+32, xlabel, 2, black)
	c.text(int(left)-textWidth(ylabel, 2)/2, int(top)-22, ylabel, 2, black)
	for _, h := range hlines {
		y := h.points[0][1]
		c.line(left, py(y), right, py(y), 2, h.col, 8)
		x := int(left) + 6 // opposite the legend
		if !legendBottom {
			x = int(right) - 6 - textWidth(h.name, 2)
		}
		c.text(x, int(py(y))-20, h.name, 2, h.col)
	}
	lx, ly := int(left)+20, int(top)+8
	if legendBottom {
		n := 0
		for _, s := range ss {
			if len(s.points) > 0 {
				n++
			}
		}
		lx, ly = int(right)-240, int(bottom)-12-22*n
	}
	for _, s := range ss {
		var prev *[2]float64
		for i := range s.points {
			p := s.points[i]
			if prev != nil {
				c.line(px(prev[0]), py(prev[1]), px(p[0]), py(p[1]), 3, s.col, s.dash)
			}
			c.dot(int(px(p[0])), int(py(p[1])), 9, s.col)
			prev = &s.points[i]
		}
		if len(s.points) > 0 {
			c.line(float64(lx), float64(ly+7), float64(lx+30), float64(ly+7), 3, s.col, s.dash)
			c.text(lx+38, ly, s.name, 2, black)
			ly += 22
		}
	}
}

func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(f float64) string {
	s := fmt.Sprintf("%.3f", f)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

var (
	colWorker = color.RGBA{0x1f, 0x5f, 0xbf, 255}
	colFloor  = color.RGBA{0x2c, 0xa0, 0x2c, 255}
	colSDK    = color.RGBA{0xd6, 0x27, 0x28, 255}
	colTarget = color.RGBA{0x99, 0x66, 0x00, 255}
)

// plot writes the picture: CPU and propagation delay against the number of
// keys, for the worker, the polling floor and the SDK-as-writer baseline.
func plot(res *Results, path string) error {
	var xs []float64
	seen := map[int]bool{}
	cpu := map[string]*series{
		"worker": {name: "WORKER", col: colWorker},
		"floor":  {name: "POLLING FLOOR", col: colFloor},
		"sdk":    {name: "SDK AS WRITER", col: colSDK},
	}
	prop := []*series{
		{name: "WORKER P99", col: colWorker}, {name: "WORKER P50", col: colWorker, dash: 6},
		{name: "SDK P99", col: colSDK}, {name: "SDK P50", col: colSDK, dash: 6},
	}
	ymaxCPU, ymaxProp := 0.05, 12.0
	for _, r := range res.Runs {
		if r.Filler != res.Config.Filler || r.Label != "" || len(r.Errors) > 0 {
			continue
		}
		if !seen[r.Keys] {
			seen[r.Keys] = true
			xs = append(xs, float64(r.Keys))
		}
		cpu[r.Kind].points = append(cpu[r.Kind].points, [2]float64{float64(r.Keys), r.CPUCores})
		ymaxCPU = math.Max(ymaxCPU, r.CPUCores*1.15)
		switch r.Kind {
		case "worker":
			prop[0].points = append(prop[0].points, [2]float64{float64(r.Keys), r.Prop.P99})
			prop[1].points = append(prop[1].points, [2]float64{float64(r.Keys), r.Prop.P50})
		case "sdk":
			prop[2].points = append(prop[2].points, [2]float64{float64(r.Keys), r.Prop.P99})
			prop[3].points = append(prop[3].points, [2]float64{float64(r.Keys), r.Prop.P50})
		}
		ymaxProp = math.Max(ymaxProp, r.Prop.P99*1.1)
	}
	if len(xs) == 0 {
		return fmt.Errorf("nothing to plot")
	}
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			if xs[j] < xs[i] {
				xs[i], xs[j] = xs[j], xs[i]
			}
		}
	}
	for _, s := range cpu {
		sortPoints(s.points)
	}
	for _, s := range prop {
		sortPoints(s.points)
	}
	if xs[len(xs)-1] >= 10000 {
		ymaxCPU = math.Max(ymaxCPU, 0.25)
	}
	cv := newCanvas(1400, 560)
	interval := res.Config.Interval.Seconds()
	cv.panel(image.Rect(0, 0, 700, 560), "CPU VS SDK KEYS", "SDK KEYS (LOG SCALE)", "CORES",
		xs, ymaxCPU, []series{*cpu["worker"], *cpu["floor"], *cpu["sdk"]},
		[]series{{name: "TARGET AT 10000 KEYS: 0.2", col: colTarget, points: [][2]float64{{0, 0.2}}}}, false)
	cv.panel(image.Rect(700, 0, 1400, 560), "CHANGE TO REDIS DELAY VS SDK KEYS", "SDK KEYS (LOG SCALE)", "SECONDS",
		xs, ymaxProp, []series{*prop[0], *prop[1], *prop[2], *prop[3]},
		[]series{{name: fmt.Sprintf("TARGET P99: %s", trimFloat(interval+0.25)), col: colTarget, points: [][2]float64{{0, interval + 0.25}}}}, true)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, cv.img)
}

func sortPoints(p [][2]float64) {
	for i := range p {
		for j := i + 1; j < len(p); j++ {
			if p[j][0] < p[i][0] {
				p[i], p[j] = p[j], p[i]
			}
		}
	}
}
