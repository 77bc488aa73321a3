package storage

import (
	"sync"
	"time"
)

// IdlePool keeps a backend's connections between operations, so that the
// steps of one backup share a login: at most Max wait, the most recently
// used is taken first, and each is closed once it waited Idle unused. Its
// zero value keeps nothing; a backend sets Max and Idle.
type IdlePool[T comparable] struct {
	Max  int
	Idle time.Duration

	mu    sync.Mutex
	items []idleItem[T]
}

type idleItem[T comparable] struct {
	v     T
	timer *time.Timer
}

// Get takes the most recently used idle connection out of the pool; ok is
// false when none waits. The caller checks it still answers.
func (p *IdlePool[T]) Get() (v T, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.items) > 0 {
		it := p.items[len(p.items)-1]
		p.items = p.items[:len(p.items)-1]
		if it.timer.Stop() {
			return it.v, true
		}
		// Its idle time ran out: it is being closed.
	}
	return v, false
}

// Put lets v wait for the next operation, or closes it at once (with
// closeFn) when the pool is full; closeFn also closes it once it waited
// Idle.
func (p *IdlePool[T]) Put(v T, closeFn func()) {
	p.mu.Lock()
	if len(p.items) >= p.Max {
		p.mu.Unlock()
		closeFn()
		return
	}
	p.items = append(p.items, idleItem[T]{v: v, timer: time.AfterFunc(p.Idle, func() {
		p.drop(v)
		closeFn()
	})})
	p.mu.Unlock()
}

// drop takes v out of the pool.
func (p *IdlePool[T]) drop(v T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, it := range p.items {
		if it.v == v {
			p.items = append(p.items[:i], p.items[i+1:]...)
			return
		}
	}
}
