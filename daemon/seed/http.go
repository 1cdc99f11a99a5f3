package seed

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/drayage/drayage/daemon/seed/source"
)

// openHTTP asks an http(s) server for the archive from byte from on, with If-Range so
// that a server whose archive changed sends all of it instead.
func (f *Fetcher) openHTTP(ctx context.Context, src source.Source, from int64, validator string) (*body, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", source.ErrBad, src, err)
	}
	if from > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", from))
		req.Header.Set("If-Range", validator)
	}
	client := f.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", src, err)
	}
	b := &body{ReadCloser: resp.Body, size: resp.ContentLength, validator: validatorOf(resp.Header)}
	switch resp.StatusCode {
	case http.StatusOK:
		return b, nil
	case http.StatusPartialContent:
		start, size, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || from == 0 || start != from {
			resp.Body.Close()
			return nil, fmt.Errorf("download %s: asked for bytes from %d on, the server sent range %q", src, from, resp.Header.Get("Content-Range"))
		}
		b.start, b.size = start, size
		if b.validator == "" {
			b.validator = validator
		}
		return b, nil
	}
	resp.Body.Close()
	err = fmt.Errorf("download %s: the server answered %s", src, resp.Status)
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return nil, fmt.Errorf("%w: %w; check the URL and that the server lets this node read it", ErrRefused, err)
	}
	return nil, err
}

// validatorOf is what names this version of a resource for If-Range: a strong ETag, or
// else the modification time ("" if neither: a download then can't resume).
func validatorOf(h http.Header) string {
	if e := h.Get("ETag"); e != "" && !strings.HasPrefix(e, "W/") {
		return e
	}
	return h.Get("Last-Modified")
}

// contentRange parses "bytes START-END/SIZE" (SIZE may be "*": unknown, -1).
func contentRange(v string) (start, size int64, ok bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, false
	}
	span, total, ok := strings.Cut(rest, "/")
	first, _, ok2 := strings.Cut(span, "-")
	if !ok || !ok2 {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	size = -1
	if total != "*" {
		if size, err = strconv.ParseInt(total, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, size, true
}
