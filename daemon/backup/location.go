package backup

import (
	"errors"
	"fmt"
	"strings"

	"github.com/drayage/drayage/daemon/seed/source"
)

// ErrBadLocation means a backup location is not s3://BUCKET/PREFIX/; the message says
// what to give instead.
var ErrBadLocation = errors.New("bad backup location")

// Location is where a volume's backups are kept.
type Location struct {
	Bucket string
	// Prefix ends in "/" (or is "", the bucket's root).
	Prefix string
	// Snapshot names one snapshot (…/PREFIX/@SNAPSHOT), or "".
	Snapshot string
}

// String is the location as users write it.
func (l Location) String() string {
	s := "s3://" + l.Bucket + "/" + l.Prefix
	if l.Snapshot != "" {
		s += "@" + l.Snapshot
	}
	return s
}

// ParseLocation reads s3://BUCKET/PREFIX/ (the trailing slash may be left out) or
// s3://BUCKET/PREFIX/@SNAPSHOT.
func ParseLocation(s string) (Location, error) {
	if strings.HasPrefix(s, "s3://") && !strings.HasSuffix(s, "/") && !strings.Contains(s, "/@") {
		s += "/"
	}
	src, err := source.Parse(s, "")
	if err == nil && !src.Backup {
		err = fmt.Errorf("%q names no prefix", s)
	}
	if err != nil || src.Bucket == "" {
		if err == nil {
			err = fmt.Errorf("%q names no bucket", s)
		}
		return Location{}, fmt.Errorf("%w: %w; give s3://BUCKET/PREFIX/ (the daemon's DRAYAGE_S3_* settings say which S3 and with what credentials)", ErrBadLocation, err)
	}
	return Location{Bucket: src.Bucket, Prefix: src.Key, Snapshot: src.Snapshot}, nil
}
