package main

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sdsafety/safety"
)

// metrics are safetyd's Prometheus metrics, on a registry of their own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec // by status code
	latency  prometheus.Histogram
	batch    prometheus.Histogram // images per model batch
	queue    prometheus.Gauge     // requests admitted: reading, waiting or being checked
	rejected prometheus.Counter   // 429s
	images   prometheus.Counter
	flagged  prometheus.Counter
	ready    prometheus.Gauge
}

func newMetrics(queueCapacity int) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "safetyd_requests_total", Help: "POST /v1/check requests by HTTP status code.",
		}, []string{"code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "safetyd_request_duration_seconds", Help: "Latency of POST /v1/check, from the request to the response.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17), // 1 ms to about 65 s
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "safetyd_batch_size", Help: "Images per model batch.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "safetyd_queue_depth", Help: "Requests admitted and not yet answered (reading, waiting or being checked).",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "safetyd_rejected_total", Help: "Requests refused with 429 because the queue was full.",
		}),
		images: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "safetyd_images_checked_total", Help: "Images checked.",
		}),
		flagged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "safetyd_images_flagged_total", Help: "Images checked and found NSFW.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "safetyd_ready", Help: "1 while the model is loaded and the server takes requests.",
		}),
	}
	capacity := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "safetyd_queue_capacity", Help: "Most requests admitted at once (-queue).",
	})
	capacity.Set(float64(queueCapacity))
	m.reg.MustRegister(m.requests, m.latency, m.batch, m.queue, m.rejected, m.images, m.flagged, m.ready, capacity,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) observeRequest(status int, d time.Duration) {
	m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
	m.latency.Observe(d.Seconds())
}

// observeBatch is the checker's batch observer (safety.WithBatchObserver).
func (m *metrics) observeBatch(images int) { m.batch.Observe(float64(images)) }

func (m *metrics) observeResults(results []safety.Result) {
	m.images.Add(float64(len(results)))
	for _, r := range results {
		if r.NSFW {
			m.flagged.Inc()
		}
	}
}
