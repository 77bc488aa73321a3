package webdav

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"remora.dev/remora/storage"
)

// propfindBody asks for what List and Stat need, and nothing else: a
// server's default (allprop) may compute costly properties.
const propfindBody = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>`

// entry is one resource of a PROPFIND answer.
type entry struct {
	key  string // relative to the root, no trailing slash; "" is the root
	dir  bool
	size int64
	mod  time.Time
}

// multistatus is the part of a PROPFIND answer (RFC 4918, 14.16) read here.
type multistatus struct {
	Responses []struct {
		Href     string `xml:"DAV: href"`
		Propstat []struct {
			Status string `xml:"DAV: status"`
			Prop   struct {
				Type struct {
					Collection *struct{} `xml:"DAV: collection"`
				} `xml:"DAV: resourcetype"`
				Length   string `xml:"DAV: getcontentlength"`
				Modified string `xml:"DAV: getlastmodified"`
			} `xml:"DAV: prop"`
		} `xml:"DAV: propstat"`
	} `xml:"DAV: response"`
}

// propfind asks for the resource at rel (a key, or a collection ending in
// "/", or "" for the root) and, with depth "1", its members. The resource
// itself comes first.
func (s *Storage) propfind(ctx context.Context, rel, depth string) ([]entry, error) {
	resp, err := s.retry(ctx, "PROPFIND /"+rel, func(ctx context.Context, _ int) (*http.Response, error) {
		req, err := s.newRequest(ctx, "PROPFIND", rel, strings.NewReader(propfindBody))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Depth", depth)
		req.Header.Set("Content-Type", `application/xml; charset="utf-8"`)
		return s.client.Do(req)
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusMultiStatus {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, unexpected(resp)
	}
	var ms multistatus
	if err := xml.NewDecoder(resp.Body).Decode(&ms); err != nil {
		return nil, fmt.Errorf("read the PROPFIND answer for /%s: %w", rel, err)
	}
	self := strings.TrimSuffix(rel, "/")
	var out []entry
	for _, r := range ms.Responses {
		e, ok := s.entry(r.Href)
		if !ok {
			continue
		}
		for _, ps := range r.Propstat {
			if !strings.Contains(ps.Status, " 200") {
				continue
			}
			e.dir = e.dir || ps.Prop.Type.Collection != nil
			if n, err := strconv.ParseInt(strings.TrimSpace(ps.Prop.Length), 10, 64); err == nil {
				e.size = n
			}
			if t, err := http.ParseTime(strings.TrimSpace(ps.Prop.Modified)); err == nil {
				e.mod = t.UTC()
			}
		}
		if e.key == self {
			out = append([]entry{e}, out...)
		} else {
			out = append(out, e)
		}
	}
	return out, nil
}

// entry reads an href (an absolute path or URL) as a key below the root.
func (s *Storage) entry(href string) (entry, bool) {
	u, err := url.Parse(strings.TrimSpace(href))
	if err != nil {
		return entry{}, false
	}
	p := u.Path
	if p+"/" == s.base.Path {
		return entry{key: "", dir: true}, true
	}
	if !strings.HasPrefix(p, s.base.Path) {
		return entry{}, false
	}
	rel := strings.TrimPrefix(p, s.base.Path)
	dir := strings.HasSuffix(rel, "/")
	return entry{key: strings.TrimSuffix(rel, "/"), dir: dir}, true
}

// walk calls fn for every file (not collection) below the collection that
// holds prefix whose key starts with prefix, temporary ones included,
// visiting only the collections that can hold such keys. A missing
// collection has nothing in it.
func (s *Storage) walk(ctx context.Context, prefix string, fn func(entry) error) error {
	start := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = prefix[:i]
	}
	todo := []string{start}
	for len(todo) > 0 {
		dir := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		rel := ""
		if dir != "" {
			rel = dir + "/"
		}
		entries, err := s.propfind(ctx, rel, "1")
		if hasStatus(err, http.StatusNotFound) && dir != "" {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			switch {
			case e.key == dir || (dir != "" && !strings.HasPrefix(e.key, dir+"/")):
				// the collection itself, or an odd href
			case e.dir && (strings.HasPrefix(e.key+"/", prefix) || strings.HasPrefix(prefix, e.key+"/")):
				todo = append(todo, e.key)
			case !e.dir && strings.HasPrefix(e.key, prefix):
				if err := fn(e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// List walks the collections below the root that can hold keys starting
// with prefix, then calls fn in key order.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	var objs []storage.Object
	err := s.walk(ctx, prefix, func(e entry) error {
		if !strings.Contains(baseName(e.key), tmpMarker) {
			objs = append(objs, storage.Object{Key: e.key, Size: e.size, ModTime: e.mod})
		}
		return nil
	})
	if err != nil {
		return s.err("list", prefix, err)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	for _, o := range objs {
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

// baseName is the last element of a key.
func baseName(key string) string { return key[strings.LastIndex(key, "/")+1:] }

// Sweep removes the temporary files of interrupted Puts below prefix's
// collection that the server last wrote before olderThan.
func (s *Storage) Sweep(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	var old []string
	err := s.walk(ctx, prefix, func(e entry) error {
		if strings.Contains(baseName(e.key), tmpMarker) && !e.mod.IsZero() && e.mod.Before(olderThan) {
			old = append(old, e.key)
		}
		return nil
	})
	if err != nil {
		return 0, s.err("sweep", prefix, err)
	}
	n := 0
	for _, k := range old {
		if err := s.Delete(ctx, k); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
