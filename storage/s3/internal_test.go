package s3

import (
	"net/url"
	"testing"
)

func TestPartSizes(t *testing.T) {
	s := &Storage{partSize: defaultPartSize}
	for num, want := range map[int]int64{1: 8 << 20, 1000: 8 << 20, 1001: 16 << 20, 2001: 32 << 20, maxParts: 4 << 30} {
		if got := s.partSizeAt(num); got != want {
			t.Errorf("part %d: %d bytes, want %d", num, got, want)
		}
	}
	var total int64
	for num := 1; num <= maxParts; num++ {
		total += s.partSizeAt(num)
	}
	if total < 4<<40 {
		t.Errorf("%d parts hold %d bytes, want several TiB", maxParts, total)
	}
	s.partSize = maxPartSize
	if got := s.partSizeAt(maxParts); got != maxPartSize {
		t.Errorf("the last part of 5GiB parts is %d bytes", got)
	}
}

func TestPartSizeOption(t *testing.T) {
	for v, want := range map[string]int64{
		"5MiB": 5 << 20, "16MiB": 16 << 20, "8388608": 8388608, "16MB": 16e6, "1GiB": 1 << 30, "5GiB": 5 << 30, "16mib": 16 << 20,
	} {
		c, err := configure(&url.URL{Scheme: "s3", Host: "bucket", RawQuery: "part-size=" + url.QueryEscape(v)})
		if err != nil || c.s.partSize != want {
			t.Errorf("part-size=%s: %v, %v; want %d bytes", v, c, err, want)
		}
	}
}
