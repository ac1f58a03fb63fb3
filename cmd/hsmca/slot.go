package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/config"
)

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hsmca "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func moduleFlag(fs *flag.FlagSet) *string {
	def := config.DefaultModule()
	if v := getenv("HSMCA_PKCS11_MODULE"); v != "" {
		def = v
	}
	return fs.String("module", def, "PKCS#11 library (HSMCA_PKCS11_MODULE)")
}

func slotList(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("slot list", stderr)
	module := moduleFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	slots, err := hsm.ListSlots(*module)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca slot list:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%-12s %-10s %-32s %-20s %s\n", "SLOT", "TOKEN", "LABEL", "MODEL", "SERIAL")
	for _, s := range slots {
		state := "absent"
		if s.TokenPresent {
			state = "blank"
			if s.Initialized {
				state = "ready"
			}
		}
		fmt.Fprintf(stdout, "%-12d %-10s %-32s %-20s %s\n", s.ID, state, s.Label, s.Model, s.Serial)
	}
	return 0
}

func slotInit(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("slot init", stderr)
	module := moduleFlag(fs)
	label := fs.String("label", "", "token label (required)")
	soPINFile := fs.String("so-pin-file", "", "file holding the new security officer PIN (required)")
	pinFile := fs.String("pin-file", "", "file holding the new user PIN (required)")
	slotStr := fs.String("slot", "", "slot id (default: the first slot with a blank token)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *label == "" || *soPINFile == "" || *pinFile == "" {
		fmt.Fprintln(stderr, "hsmca slot init: --label, --so-pin-file and --pin-file are required")
		return 2
	}
	var slot *uint
	if *slotStr != "" {
		n, err := strconv.ParseUint(*slotStr, 10, 32)
		if err != nil {
			fmt.Fprintf(stderr, "hsmca slot init: --slot %q is not a slot number\n", *slotStr)
			return 2
		}
		s := uint(n)
		slot = &s
	}
	soPIN, err := hsm.ReadPIN(*soPINFile, "")
	if err != nil {
		fmt.Fprintln(stderr, "hsmca slot init: SO PIN:", err)
		return 1
	}
	pin, err := hsm.ReadPIN(*pinFile, "")
	if err != nil {
		fmt.Fprintln(stderr, "hsmca slot init: user PIN:", err)
		return 1
	}
	fmt.Fprintf(stderr, "initialising token %q ...\n", *label)
	id, err := hsm.InitToken(*module, slot, *label, soPIN, pin)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca slot init:", err)
		return 1
	}
	fmt.Fprintf(stdout, "token %q initialised in slot %d\n", *label, id)
	return 0
}
