package source_test

import (
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/seed/source"
)

func TestParseSaysWhatIsWrongWithASource(t *testing.T) {
	sum := hex.EncodeToString(make([]byte, 32))
	for _, tc := range []struct{ from, sha, why string }{
		{"ftp://host/a.tar", "", `scheme "ftp"`},
		{"http://host/a.tar", "", "plain http"},
		{"https://user:secret@host/a.tar", "", "carries credentials"},
		{"s3://bucket", "", "names no object"},
		{"s3://bucket/backups/@", "", "give a snapshot"},
		{"s3://bucket/backups/", hex.EncodeToString(make([]byte, 32)), "remove sha256"},
		{"https://host/a.tar", "abc", "not a SHA-256"},
		{"https:///a.tar", "", "names no host"},
		{"", "", "is not a URL"},
	} {
		_, err := source.Parse(tc.from, tc.sha)
		require.ErrorIs(t, err, source.ErrBad, tc.from)
		assert.Contains(t, err.Error(), tc.why, tc.from)
		assert.NotContains(t, err.Error(), "secret", "a credential is never repeated")
	}
	for _, ok := range []struct{ from, sha string }{{"https://host/a.tar", ""}, {"http://host:8080/a.tar.gz", sum}, {"s3://bucket/dir/a.tar.zst", ""}} {
		src, err := source.Parse(ok.from, ok.sha)
		require.NoError(t, err, ok.from)
		assert.Equal(t, ok.from, src.String())
	}
	for from, want := range map[string]source.Source{
		"s3://bucket/backups/db/":                          {Bucket: "bucket", Key: "backups/db/", Backup: true},
		"s3://bucket/backups/db/@20261203-140501-ab12cd34": {Bucket: "bucket", Key: "backups/db/", Backup: true, Snapshot: "20261203-140501-ab12cd34"},
	} {
		src, err := source.Parse(from, "")
		require.NoError(t, err, from)
		src.URL = nil
		assert.Equal(t, want, src, from)
	}
	src, err := source.Parse("https://host/a.tar?X-Amz-Signature=abc", "")
	require.NoError(t, err)
	assert.Equal(t, "https://host/a.tar", src.String(), "logs and progress never show a query, which may hold a signature")
}
