package pzstd

import (
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Chunks and encoders outlive a Writer in pools, so that a backup of many
// objects allocates them once rather than once per object. A pool per chunk
// size and per encoder setting: in practice, one of each.
var chunkPools, encoderPools sync.Map

func chunkPool(size int) *sync.Pool {
	if p, ok := chunkPools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := chunkPools.LoadOrStore(size, &sync.Pool{New: func() any {
		// Incompressible input grows by 3 bytes of block header per
		// block of 128 KiB (or per chunk, if smaller) and by the frame's
		// header and checksum: room for those, so that out never grows.
		return &chunk{
			in:  make([]byte, 0, size),
			out: make([]byte, 0, size+size>>15+64),
		}
	}})
	return p.(*sync.Pool)
}

// encoderKey is what an encoder is built with.
type encoderKey struct {
	level  zstd.EncoderLevel
	window int
}

func getEncoder(o Options) *zstd.Encoder {
	k := encoderKey{o.Level, window(o.ChunkSize)}
	p, ok := encoderPools.Load(k)
	if !ok {
		p, _ = encoderPools.LoadOrStore(k, &sync.Pool{New: func() any { return newEncoder(k) }})
	}
	return p.(*sync.Pool).Get().(*zstd.Encoder)
}

// newEncoder makes one worker's encoder, used only through EncodeAll, which
// starts no goroutine. The options are valid by construction.
func newEncoder(k encoderKey) *zstd.Encoder {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(k.level), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(k.window), zstd.WithZeroFrames(true))
	if err != nil {
		panic(err)
	}
	return enc
}

func putEncoder(o Options, enc *zstd.Encoder) {
	p, _ := encoderPools.Load(encoderKey{o.Level, window(o.ChunkSize)})
	p.(*sync.Pool).Put(enc)
}
