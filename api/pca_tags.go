package api

import (
	"context"
	"math"
	"net/http"

	"github.com/gin-gonic/gin"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
)

// pcaTags is what the CCM tag routes call. Each route exists for CAs and
// for certificates alike; target says which.
type pcaTags interface {
	CreateTag(ctx context.Context, tenant string, target pcasvc.TagTarget, id string, t pcasvc.Tag) error
	CreateTags(ctx context.Context, tenant string, target pcasvc.TagTarget, id string, tags []pcasvc.Tag) error
	DeleteTags(ctx context.Context, tenant string, target pcasvc.TagTarget, id string, tags []pcasvc.Tag) error
	ListTags(ctx context.Context, tenant string, target pcasvc.TagTarget, id string) ([]pcasvc.Tag, error)
	TagKeys(ctx context.Context, tenant string, target pcasvc.TagTarget) ([]pcasvc.TagKey, error)
	FilterResources(ctx context.Context, tenant string, target pcasvc.TagTarget, q pcasvc.TagQuery) ([]pcasvc.TaggedResource, int, error)
	CountResources(ctx context.Context, tenant string, target pcasvc.TagTarget, q pcasvc.TagQuery) (int, error)
}

// pcaTag is a tag as CCM sends it (ResourceTag); a missing value is "".
type pcaTag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func tagsIn(list []pcaTag) []pcasvc.Tag {
	out := make([]pcasvc.Tag, 0, len(list))
	for _, t := range list {
		out = append(out, pcasvc.Tag{Key: t.Key, Value: t.Value})
	}
	return out
}

func tagsOut(list []pcasvc.Tag) []pcaTag {
	out := make([]pcaTag, 0, len(list))
	for _, t := range list {
		out = append(out, pcaTag{Key: t.Key, Value: t.Value})
	}
	return out
}

// pcaTagCreate serves POST …/{id}/tags: {"tag": {key, value}}.
func (s *server) pcaTagCreate(target pcasvc.TagTarget, param string) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req struct {
			Tag *pcaTag `json:"tag"`
		}
		if !pcaBody(c, &req, false) {
			return
		}
		if req.Tag == nil {
			pcaError(c, pcaInvalid("tag", nil, "is required"))
			return
		}
		err := s.pcaAPI.CreateTag(c.Request.Context(), tenantOf(c), target, c.Param(param),
			pcasvc.Tag{Key: req.Tag.Key, Value: req.Tag.Value})
		if err != nil {
			pcaError(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}

// pcaTagsBatch serves POST …/{id}/tags/create and DELETE
// …/{id}/tags/delete: {"tags": [{key, value}, …]}.
func (s *server) pcaTagsBatch(target pcasvc.TagTarget, param string, del bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req struct {
			Tags []pcaTag `json:"tags"`
		}
		if !pcaBody(c, &req, false) {
			return
		}
		if req.Tags == nil {
			pcaError(c, pcaInvalid("tags", nil, "is required"))
			return
		}
		f := s.pcaAPI.CreateTags
		if del {
			f = s.pcaAPI.DeleteTags
		}
		if err := f(c.Request.Context(), tenantOf(c), target, c.Param(param), tagsIn(req.Tags)); err != nil {
			pcaError(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}

// pcaTagsList serves GET …/{id}/tags.
func (s *server) pcaTagsList(target pcasvc.TagTarget, param string) gin.HandlerFunc {
	return func(c *gin.Context) {
		tags, err := s.pcaAPI.ListTags(c.Request.Context(), tenantOf(c), target, c.Param(param))
		if err != nil {
			pcaError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"tags": tagsOut(tags)})
	}
}

// pcaTagKey is one key of the tenant's tags (DomainTags).
type pcaTagKey struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// pcaTagKeys serves GET …/tags: the tenant's keys and their values.
func (s *server) pcaTagKeys(target pcasvc.TagTarget) gin.HandlerFunc {
	return func(c *gin.Context) {
		keys, err := s.pcaAPI.TagKeys(c.Request.Context(), tenantOf(c), target)
		if err != nil {
			pcaError(c, err)
			return
		}
		out := make([]pcaTagKey, 0, len(keys))
		for _, k := range keys {
			out = append(out, pcaTagKey{Key: k.Key, Values: k.Values})
		}
		c.JSON(http.StatusOK, gin.H{"tags": out})
	}
}

// pcaTagQuery is the body of the resource-instance queries
// (ListResourceInstancesRequestBody, with TMS's without_any_tag). A key's
// values may be absent or null: any value.
type pcaTagQuery struct {
	Tags []struct {
		Key    string   `json:"key"`
		Values []string `json:"values"`
	} `json:"tags"`
	Limit         *int64   `json:"limit"`
	Offset        *int64   `json:"offset"`
	Matches       []pcaTag `json:"matches"`
	WithoutAnyTag bool     `json:"without_any_tag"`
}

// Paging of the filter route, as CCM documents it: limit 10 to 50
// (default 10), offset from 0.
const (
	pcaFilterLimitMin, pcaFilterLimitMax, pcaFilterLimitDefault = 10, 50, 10
)

// engine reads the body; paging says whether limit and offset count
// (the count route ignores them).
func (q *pcaTagQuery) engine(paging bool) (pcasvc.TagQuery, error) {
	out := pcasvc.TagQuery{WithoutAnyTag: q.WithoutAnyTag, Matches: tagsIn(q.Matches)}
	for _, t := range q.Tags {
		out.Tags = append(out.Tags, pcasvc.TagFilter{Key: t.Key, Values: t.Values})
	}
	if !paging {
		return out, nil
	}
	out.Limit = pcaFilterLimitDefault
	if q.Limit != nil {
		if *q.Limit < pcaFilterLimitMin || *q.Limit > pcaFilterLimitMax {
			return out, pcaInvalid("limit", *q.Limit, "must be an integer from 10 to 50")
		}
		out.Limit = int(*q.Limit)
	}
	if q.Offset != nil {
		if *q.Offset < 0 || *q.Offset > math.MaxInt32 {
			return out, pcaInvalid("offset", *q.Offset, "must be an integer from 0 to 2147483647")
		}
		out.Offset = int(*q.Offset)
	}
	return out, nil
}

// pcaTagResource is one resource of a filter answer (TagResource):
// resource_detail is the resource as its show route answers it.
type pcaTagResource struct {
	ID     string   `json:"resource_id"`
	Detail any      `json:"resource_detail"`
	Tags   []pcaTag `json:"tags"`
	Name   string   `json:"resource_name"`
}

// pcaTagFilter serves POST …/resource-instances/filter.
func (s *server) pcaTagFilter(target pcasvc.TagTarget) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req pcaTagQuery
		if !pcaBody(c, &req, true) {
			return
		}
		q, err := req.engine(true)
		if err != nil {
			pcaError(c, err)
			return
		}
		list, total, err := s.pcaAPI.FilterResources(c.Request.Context(), tenantOf(c), target, q)
		if err != nil {
			pcaError(c, err)
			return
		}
		out := make([]pcaTagResource, 0, len(list))
		base := s.publicBase(c)
		for _, r := range list {
			v := pcaTagResource{ID: r.ID, Name: r.Name, Tags: tagsOut(r.Tags)}
			switch {
			case r.CA != nil:
				v.Detail = viewCA(r.CA, base)
			case r.Certificate != nil:
				v.Detail = viewCert(r.Certificate)
			}
			out = append(out, v)
		}
		c.JSON(http.StatusOK, gin.H{"resources": out, "total_count": total})
	}
}

// pcaTagCount serves POST …/resource-instances/count.
func (s *server) pcaTagCount(target pcasvc.TagTarget) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req pcaTagQuery
		if !pcaBody(c, &req, true) {
			return
		}
		q, _ := req.engine(false)
		total, err := s.pcaAPI.CountResources(c.Request.Context(), tenantOf(c), target, q)
		if err != nil {
			pcaError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"total_count": total})
	}
}
