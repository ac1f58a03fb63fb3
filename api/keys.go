package api

// mountKeys mounts hsmca's own keys API (family 5).
func (s *server) mountKeys() {}
