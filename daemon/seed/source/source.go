// Package source is what a volume's from and sha256 options may say: where its first
// content comes from. It only parses; package seed fetches.
package source

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrBad means a volume's from or sha256 option is not something drayage can
// fill a volume from; the message says what was wrong and what to give instead.
var ErrBad = errors.New("bad seed source")

// Source is where a volume's first content comes from.
type Source struct {
	// URL is the archive's address as the volume option gives it.
	URL *url.URL
	// Bucket and Key name an S3 object (s3://BUCKET/KEY), or with Backup a drayage
	// backup's prefix (s3://BUCKET/PREFIX/, Key ending in "/").
	Bucket, Key string
	// Backup: the source is a drayage backup, to restore its snapshot Snapshot ("": the
	// latest), given as s3://BUCKET/PREFIX/@SNAPSHOT.
	Backup   bool
	Snapshot string
	// SHA256 is the archive's expected SHA-256 (lowercase hex), or "".
	SHA256 string
}

// Parse checks a volume's from option, and sha256 if given: an https URL, an http URL
// with a sha256 (nothing else vouches for what arrives), s3://BUCKET/KEY, or a backup
// s3://BUCKET/PREFIX/ or s3://BUCKET/PREFIX/@SNAPSHOT. A URL may
// not carry credentials: volume options are shown by 'docker volume inspect' to anyone
// who can list volumes, so credentials go in the daemon's settings.
func Parse(from, sha string) (Source, error) {
	bad := func(format string, args ...any) (Source, error) {
		return Source{}, fmt.Errorf("%w: %s", ErrBad, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(from)
	if err != nil || from == "" {
		return bad("from=%q is not a URL; give https://HOST/PATH, http://HOST/PATH with sha256, or s3://BUCKET/KEY", from)
	}
	if u.User != nil {
		return bad("from= carries credentials, which 'docker volume inspect' would show; remove them and give S3 credentials as DRAYAGE_S3_ACCESS_KEY and DRAYAGE_S3_SECRET_KEY_FILE on the daemon")
	}
	src := Source{URL: u}
	if sha != "" {
		if b, err := hex.DecodeString(sha); err != nil || len(b) != 32 {
			return bad("sha256=%q is not a SHA-256 in hex (64 characters, as sha256sum prints it)", sha)
		}
		src.SHA256 = strings.ToLower(sha)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if src.SHA256 == "" {
			return bad("from=%s is plain http, which anyone on the way can change: give -o sha256=HEX too (sha256sum of the archive), or use https", src)
		}
	case "s3":
		src.Bucket, src.Key = u.Host, strings.TrimPrefix(u.Path, "/")
		if src.Bucket == "" || src.Key == "" {
			return bad("from=%s names no object; give s3://BUCKET/KEY", src)
		}
		if prefix, snap, ok := strings.Cut(src.Key, "/@"); ok {
			if snap == "" || strings.Contains(snap, "/") {
				return bad("from=%s: give a snapshot as s3://BUCKET/PREFIX/@SNAPSHOT, SNAPSHOT as 'drayage backup ls' lists it", src)
			}
			src.Key, src.Snapshot = prefix+"/", snap
		}
		src.Backup = strings.HasSuffix(src.Key, "/")
		if src.Backup && src.SHA256 != "" {
			return bad("from=%s is a drayage backup, checked against its snapshot's root hash: remove sha256", src)
		}
		return src, nil
	default:
		return bad("from=%q: scheme %q is not one drayage fills volumes from; give https://, http:// (with sha256) or s3://", from, u.Scheme)
	}
	if u.Host == "" {
		return bad("from=%q names no host", from)
	}
	return src, nil
}

// String is the source's URL without its query (which may hold a signature), as logs
// and progress show it.
func (s Source) String() string {
	if s.URL == nil {
		return ""
	}
	u := *s.URL
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}
