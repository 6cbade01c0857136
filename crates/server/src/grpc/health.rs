//! `grpc.health.v1.Health`: SERVING when the server is ready (same rule as ServerReady), for
//! the empty service name and for `inference.GRPCInferenceService`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use inferd_runtime::Runtime;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::{ServerConfig, config};

const SERVICES: [&str; 2] = ["", "inference.GRPCInferenceService"];
/// How often Watch looks for a change of readiness.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

pub struct HealthService {
    runtime: Arc<Runtime>,
    config: Arc<ServerConfig>,
}

impl HealthService {
    pub fn new(runtime: Arc<Runtime>, config: Arc<ServerConfig>) -> Self {
        HealthService { runtime, config }
    }

    fn status(runtime: &Runtime, config: &ServerConfig) -> ServingStatus {
        if config::readiness(runtime, config).0 {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }

    fn known(service: &str) -> Result<(), Status> {
        if SERVICES.contains(&service) {
            Ok(())
        } else {
            Err(Status::not_found(format!("unknown service '{service}'")))
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Self::known(&request.get_ref().service)?;
        let status = Self::status(&self.runtime, &self.config);
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Self::known(&request.get_ref().service)?;
        let (runtime, config) = (Arc::clone(&self.runtime), Arc::clone(&self.config));
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let status = Self::status(&runtime, &config);
                if last != Some(status) {
                    last = Some(status);
                    if tx
                        .send(Ok(HealthCheckResponse {
                            status: status as i32,
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(WATCH_INTERVAL) => {}
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
