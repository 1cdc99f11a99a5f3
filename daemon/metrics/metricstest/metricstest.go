// Package metricstest scrapes a metrics endpoint over HTTP, as Prometheus does, and reads
// values from what it got, for tests of the layers that record metrics.
package metricstest

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// Scrape is one scrape's metric families, by name.
type Scrape map[string]*dto.MetricFamily

// Get scrapes url (a /metrics endpoint) in the text format.
func Get(t testing.TB, url string) Scrape {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", url)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// Gather reads the metric families of a registry directly, without HTTP.
func Gather(t testing.TB, g prometheus.Gatherer) Scrape {
	t.Helper()
	fams, err := g.Gather()
	require.NoError(t, err)
	s := Scrape{}
	for _, f := range fams {
		s[f.GetName()] = f
	}
	return s
}

// metric finds the series of family name whose labels include the given name/value
// pairs, or nil.
func (s Scrape) metric(name string, labels ...string) *dto.Metric {
	fam := s[name]
	if fam == nil {
		return nil
	}
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && have[labels[i]] == labels[i+1]
		}
		if match {
			return m
		}
	}
	return nil
}

// Has reports whether the scrape holds a series of name with these labels.
func (s Scrape) Has(name string, labels ...string) bool { return s.metric(name, labels...) != nil }

// Value is the value of a counter or gauge series (0 if absent), labels given as
// name/value pairs.
func (s Scrape) Value(name string, labels ...string) float64 {
	m := s.metric(name, labels...)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// Count is how many observations a histogram series holds (0 if absent).
func (s Scrape) Count(name string, labels ...string) uint64 {
	m := s.metric(name, labels...)
	if m == nil || m.Histogram == nil {
		return 0
	}
	return m.Histogram.GetSampleCount()
}

// Sum is the sum of a histogram series' observations (0 if absent).
func (s Scrape) Sum(name string, labels ...string) float64 {
	m := s.metric(name, labels...)
	if m == nil || m.Histogram == nil {
		return 0
	}
	return m.Histogram.GetSampleSum()
}

// Total sums every series of a counter or gauge family that has these labels.
func (s Scrape) Total(name string, labels ...string) float64 {
	fam := s[name]
	if fam == nil {
		return 0
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		one := Scrape{name: &dto.MetricFamily{Metric: []*dto.Metric{m}}}
		if one.metric(name, labels...) != nil {
			sum += one.Value(name, labels...)
		}
	}
	return sum
}
