package seed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/drayage/drayage/daemon/seed/source"
)

// minio-go speaks S3 to AWS and to the S3-compatible servers (MinIO, Ceph, versitygw,
// Garage) with their differences handled (path-style buckets, signatures, regions): a
// hand-written SigV4 client would have to learn each of them again.

// Client makes an S3 client from the settings; tr, if set, carries its requests.
func (c S3Config) Client(tr http.RoundTripper) (*minio.Client, error) {
	host, secure := "s3.amazonaws.com", true
	lookup := minio.BucketLookupAuto
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("%w: DRAYAGE_S3_ENDPOINT=%q is not a URL like https://HOST[:PORT]", source.ErrBad, c.Endpoint)
		}
		host, secure, lookup = u.Host, u.Scheme == "https", minio.BucketLookupPath
	}
	o := &minio.Options{Secure: secure, Region: c.Region, BucketLookup: lookup, Transport: tr}
	if c.AccessKey != "" {
		o.Creds = credentials.NewStaticV4(c.AccessKey, c.SecretKey, "")
	} else {
		o.Creds = credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	}
	return minio.New(host, o)
}

// S3Client is the fetcher's S3 client, made once from its settings.
func (f *Fetcher) S3Client() (*minio.Client, error) {
	f.once.Do(func() {
		var tr http.RoundTripper
		if f.HTTP != nil {
			tr = f.HTTP.Transport
		}
		f.s3, f.s3Err = f.S3.Client(tr)
	})
	return f.s3, f.s3Err
}

// openS3 asks S3 for the object from byte from on, if its ETag is still validator.
func (f *Fetcher) openS3(ctx context.Context, src source.Source, from int64, validator string) (*body, error) {
	c, err := f.S3Client()
	if err != nil {
		return nil, err
	}
	info, err := c.StatObject(ctx, src.Bucket, src.Key, minio.StatObjectOptions{})
	if err != nil {
		return nil, s3Error(src, c, err)
	}
	var o minio.GetObjectOptions
	if from > 0 && info.ETag == validator {
		if err := o.SetRange(from, 0); err != nil {
			return nil, err
		}
	} else {
		from = 0
	}
	if err := o.SetMatchETag(info.ETag); err != nil { // the object replaced meanwhile fails the read
		return nil, err
	}
	obj, err := c.GetObject(ctx, src.Bucket, src.Key, o)
	if err != nil {
		return nil, s3Error(src, c, err)
	}
	return &body{ReadCloser: s3Reader{obj, src, c}, start: from, size: info.Size, validator: info.ETag}, nil
}

// s3Reader reads an object, its errors said as s3Error says them.
type s3Reader struct {
	*minio.Object
	src source.Source
	c   *minio.Client
}

func (r s3Reader) Read(p []byte) (int, error) {
	n, err := r.Object.Read(p)
	if err != nil && n == 0 && !errors.Is(err, io.EOF) {
		return 0, s3Error(r.src, r.c, err)
	}
	return n, err
}

// s3Error says what S3 answered; an answer that trying again won't change wraps
// ErrRefused.
func s3Error(src source.Source, c *minio.Client, err error) error {
	r := minio.ToErrorResponse(err)
	switch r.Code {
	case "NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidBucketName", "AllAccessDisabled":
		return fmt.Errorf("%w: %s at %s answered %s (%s); check the bucket and key, and DRAYAGE_S3_ACCESS_KEY and DRAYAGE_S3_SECRET_KEY_FILE on this node",
			ErrRefused, src, c.EndpointURL().Host, r.Code, r.Message)
	}
	if r.StatusCode == http.StatusPreconditionFailed {
		return fmt.Errorf("download %s: the object changed while it was read: %w", src, err)
	}
	return fmt.Errorf("download %s from %s: %w", src, c.EndpointURL().Host, err)
}
