package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// ready asks a running daemon's /readyz, for container health checks and
// scripts: exit 0 when ready, 1 when not, 2 on usage errors.
func ready(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hsmca ready", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := "http://127.0.0.1:8080"
	if a := os.Getenv("HSMCA_LISTEN_ADDR"); a != "" {
		def = "http://" + strings.Replace(a, "0.0.0.0", "127.0.0.1", 1)
	}
	url := fs.String("url", def, "base URL of the daemon")
	caFile := fs.String("ca", "", "CA bundle to verify an HTTPS daemon's certificate")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	client := &http.Client{Timeout: *timeout}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintf(stderr, "hsmca ready: %v\n", err)
			return 2
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "hsmca ready: no certificate in %s\n", *caFile)
			return 2
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*url, "/")+"/readyz", nil)
	if err != nil {
		fmt.Fprintf(stderr, "hsmca ready: %v\n", err)
		return 2
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "hsmca ready: not ready: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body)
	if resp.StatusCode != http.StatusOK {
		var failing []string
		for name, msg := range body.Checks {
			if msg != "ok" {
				failing = append(failing, name+": "+msg)
			}
		}
		fmt.Fprintf(stderr, "hsmca ready: not ready (%d): %s\n", resp.StatusCode, strings.Join(failing, "; "))
		return 1
	}
	fmt.Fprintln(stdout, "ready")
	return 0
}
