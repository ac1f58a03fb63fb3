// Command hsmca is the operator's tool for hsmca: HSM slots and tokens, API
// tokens, first administrators and health checks.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = []command{
	{"slot list", "list PKCS#11 slots and their tokens", slotList},
	{"slot init", "initialise a token in a free slot and set its user PIN", slotInit},
	{"token create", "create an API token; prints only the token on stdout", tokenCreate},
	{"accesskey create", "create an access key for AK/SK-signed requests (Huawei SDKs); prints the key id and secret key on stdout", accessKeyCreate},
	{"client create", "create OAuth client credentials for POST /oauth/token; prints the client id and secret on stdout", clientCreate},
	{"acme eab create", "create an ACME external account binding key for a directory (through the running daemon); prints kid and hmac on stdout", acmeEABCreate},
	{"admin bootstrap", "create the first superAdministrator from a client certificate", adminBootstrap},
	{"events verify", "walk each tenant's event hash chain and name the first broken link; --checkpoint: against signed checkpoints; --export: an exported copy", eventsVerify},
	{"events export", "write a tenant's event chain as JSON lines that verify without the daemon", eventsExport},
	{"doctor", "check module, token, login, a test signature, the token's mechanisms and sessions, and the store", doctor},
	{"ready", "ask a running daemon whether it is ready (for health checks)", ready},
	{"bench", "measure a daemon on fresh tokens, bolt and redis, against the HSM's in-process limits", benchCmd},
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	// Longest match first: "slot init" before "slot".
	sorted := append([]command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i].name) > len(sorted[j].name) })
	for _, c := range sorted {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c.run(args[len(words):], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "hsmca: unknown command %q\n\n", strings.Join(args, " "))
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: hsmca <command> [flags]   (hsmca <command> --help for its flags)")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
}
