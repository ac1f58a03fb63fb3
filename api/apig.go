package api

// mountAPIG mounts Huawei APIG v2 SSL certificates (family 3).
func (s *server) mountAPIG() {}
