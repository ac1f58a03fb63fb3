package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/eventexport"
)

// ExportSinks builds the configured event export sinks.
func ExportSinks(cfg *config.Config) ([]eventexport.NamedSink, error) {
	host, _ := os.Hostname()
	var out []eventexport.NamedSink
	fail := func(err error) ([]eventexport.NamedSink, error) {
		for _, s := range out {
			_ = s.Sink.Close()
		}
		return nil, err
	}
	for _, sk := range cfg.Events.Export {
		switch sk.Type {
		case "file":
			s, err := eventexport.NewFileSink(sk.Path)
			if err != nil {
				return fail(fmt.Errorf("events.export %s: %w", sk.Name, err))
			}
			out = append(out, eventexport.NamedSink{Name: sk.Name, Sink: s})
		case "syslog":
			sc := eventexport.SyslogConfig{Address: sk.Address, Hostname: sk.Hostname, Settle: sk.Settle}
			if sc.Hostname == "" {
				sc.Hostname = host
			}
			if sk.TLS.Enabled {
				tc, err := syslogTLS(sk)
				if err != nil {
					return fail(fmt.Errorf("events.export %s: %w", sk.Name, err))
				}
				sc.TLS = tc
			}
			out = append(out, eventexport.NamedSink{Name: sk.Name, Sink: eventexport.NewSyslogSink(sc)})
		}
	}
	return out, nil
}

func syslogTLS(sk config.ExportSink) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: sk.TLS.ServerName}
	if sk.TLS.CAFile != "" {
		pem, err := os.ReadFile(sk.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate found", sk.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	if sk.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(sk.TLS.CertFile, sk.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// checkpointLoop checkpoints every event chain that moved, each
// events.checkpoint_interval, until ctx ends.
func (d *Daemon) checkpointLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.Events.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		n, err := d.engine.CheckpointDue(cctx)
		cancel()
		switch {
		case err != nil:
			d.log.Warn("event checkpoints incomplete; the next round tries again", "checkpoints", n, "err", err.Error())
		case n > 0:
			d.log.Debug("event chains checkpointed", "checkpoints", n)
		}
	}
}
