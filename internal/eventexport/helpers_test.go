package eventexport_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/metrics"
)

type tlsFiles struct {
	caFile, certFile, keyFile string
	client                    *tls.Config
}

// testpkiCA writes a CA and a server certificate for 127.0.0.1 to dir.
func testpkiCA(t *testing.T, dir string) tlsFiles {
	ca := testpki.NewCA(t, "syslog test CA")
	srv := ca.Issue(t, testpki.Options{CommonName: "127.0.0.1", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})
	f := tlsFiles{caFile: filepath.Join(dir, "ca.pem")}
	require.NoError(t, os.WriteFile(f.caFile, ca.PEM(), 0o600))
	f.certFile, f.keyFile = srv.WriteFiles(t, dir, "server")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	f.client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return f
}

func sum(t *testing.T, m *metrics.Metrics, name string, v func(*dto.Metric) float64) float64 {
	mfs, err := m.Registry.Gather()
	require.NoError(t, err)
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, s := range mf.GetMetric() {
				total += v(s)
			}
		}
	}
	return total
}

func gauge(t *testing.T, m *metrics.Metrics, name string) float64 {
	return sum(t, m, name, func(s *dto.Metric) float64 { return s.GetGauge().GetValue() })
}

func counter(t *testing.T, m *metrics.Metrics, name string) float64 {
	return sum(t, m, name, func(s *dto.Metric) float64 { return s.GetCounter().GetValue() })
}
