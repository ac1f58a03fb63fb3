package api

// mountPCA mounts Huawei CCM private CA (family 2).
func (s *server) mountPCA() {}
