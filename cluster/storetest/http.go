package storetest

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"time"
)

var plainProbe = &http.Client{Timeout: 2 * time.Second}

func tlsProbe(c *tls.Config) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
}

// httpOK reports whether GET url answers 200.
func httpOK(probe *http.Client, url string) bool {
	resp, err := probe.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// httpLeader reports whether Consul's /v1/status/leader names a leader.
func httpLeader(probe *http.Client, url string) bool {
	resp, err := probe.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Trim(strings.TrimSpace(string(b)), `"`) != ""
}
