package metrics

import "runtime"

func goVersion() string { return runtime.Version() }
