//! Which API group each endpoint belongs to (Triton's groups, plus inferd's own).

use super::scope::Group;

/// The group of an HTTP route, by its template (`/v2/models/{model}/infer`) and method.
pub fn http_group(method: &http::Method, route: &str) -> Option<Group> {
    let read = method == http::Method::GET || method == http::Method::HEAD;
    let rest = route.strip_prefix("/v2").unwrap_or(route);
    if route == "/metrics" {
        return Some(Group::Statistics);
    }
    let group = match rest {
        "" => Group::Metadata,
        r if r.starts_with("/health/") => Group::Health,
        "/logging" => Group::Logging,
        r if r.starts_with("/trace") => Group::Trace,
        r if r.starts_with("/repository") => Group::ModelRepository,
        r if r.starts_with("/systemsharedmemory") || r.starts_with("/cudasharedmemory") => {
            Group::SharedMemory
        }
        r if r.starts_with("/streams") => Group::Admin,
        r if r.starts_with("/openapi") => Group::Metadata,
        r if r.starts_with("/models") => {
            let tail = r
                .trim_start_matches("/models")
                .trim_start_matches("/{model}")
                .trim_start_matches("/versions/{version}");
            match tail {
                "" => Group::Metadata,
                "/ready" => Group::Health,
                "/config" => Group::ModelConfig,
                "/stats" => Group::Statistics,
                "/infer" | "/generate" | "/generate_stream" => Group::Inference,
                "/trace/setting" => Group::Trace,
                t if t.starts_with("/aliases")
                    || t.starts_with("/traffic")
                    || t.starts_with("/rollout")
                    || t.starts_with("/history") =>
                {
                    if read {
                        Group::Metadata
                    } else {
                        Group::Traffic
                    }
                }
                _ => return None,
            }
        }
        _ if route.starts_with("/v1/") => {
            if read {
                Group::Metadata
            } else {
                Group::Inference
            }
        }
        _ => return None,
    };
    Some(group)
}

/// The group of a gRPC method path (`/inference.GRPCInferenceService/ModelInfer`).
pub fn grpc_group(path: &str) -> Option<Group> {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Some(Group::Health);
    }
    let method = path.strip_prefix("/inference.GRPCInferenceService/")?;
    Some(match method {
        "ServerLive" | "ServerReady" | "ModelReady" => Group::Health,
        "ServerMetadata" | "ModelMetadata" => Group::Metadata,
        "ModelInfer" | "ModelStreamInfer" => Group::Inference,
        "ModelConfig" => Group::ModelConfig,
        "ModelStatistics" => Group::Statistics,
        "RepositoryIndex" | "RepositoryModelLoad" | "RepositoryModelUnload" => {
            Group::ModelRepository
        }
        m if m.contains("SharedMemory") => Group::SharedMemory,
        "TraceSetting" => Group::Trace,
        "LogSettings" => Group::Logging,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn routes_fall_in_triton_groups() {
        let get = Method::GET;
        let post = Method::POST;
        for (method, route, group) in [
            (&get, "/v2/health/ready", Group::Health),
            (&get, "/v2", Group::Metadata),
            (&get, "/v2/models/{model}", Group::Metadata),
            (
                &get,
                "/v2/models/{model}/versions/{version}/ready",
                Group::Health,
            ),
            (&get, "/v2/models/{model}/config", Group::ModelConfig),
            (&get, "/v2/models/stats", Group::Statistics),
            (
                &post,
                "/v2/models/{model}/versions/{version}/infer",
                Group::Inference,
            ),
            (
                &post,
                "/v2/repository/models/{model}/load",
                Group::ModelRepository,
            ),
            (&post, "/v2/logging", Group::Logging),
            (&get, "/v2/logging", Group::Logging),
            (&Method::PUT, "/v2/models/{model}/traffic", Group::Traffic),
            (&get, "/v2/models/{model}/traffic", Group::Metadata),
            (&post, "/v2/models/{model}/rollout/{action}", Group::Traffic),
        ] {
            assert_eq!(http_group(method, route), Some(group), "{method} {route}");
        }
        assert_eq!(http_group(&get, "/nope"), None);
        assert_eq!(
            grpc_group("/inference.GRPCInferenceService/ModelInfer"),
            Some(Group::Inference)
        );
        assert_eq!(
            grpc_group("/inference.GRPCInferenceService/RepositoryModelUnload"),
            Some(Group::ModelRepository)
        );
        assert_eq!(
            grpc_group("/grpc.health.v1.Health/Check"),
            Some(Group::Health)
        );
        assert_eq!(grpc_group("/x.Y/Z"), None);
    }
}
