package api

// mountEcosystem mounts MATTR VII DTS ecosystem certificates (family 1).
func (s *server) mountEcosystem() {}
