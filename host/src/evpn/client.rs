//! The edge to gobgpd: its gRPC API over plain HTTP/2 (gobgpd listens on loopback, no TLS).
//! Adds and deletes our routes, lists the EVPN RIB and follows its best-path changes, each path
//! translated by [`super::path`] and [`super::parse`].
//!
//! Contract: every failure of gobgpd or of the connection is a [`ClientError`]; a route that
//! cannot be used is a [`RouteError`] beside the others, never a failure of the call.

use std::net::SocketAddr;
use std::time::Duration;

use gobgp_api::apipb::gobgp_api_client::GobgpApiClient;
use gobgp_api::apipb::peer_state::SessionState;
use gobgp_api::apipb::watch_event_request::{Table, table::Filter, table::filter::Type};
use gobgp_api::apipb::watch_event_response::Event;
use gobgp_api::apipb::{
    AddPathRequest, DeletePathRequest, GetBgpRequest, ListPathRequest, ListPeerRequest, TableType,
    WatchEventRequest, WatchEventResponse,
};
use gobgp_api::tonic::transport::{Channel, Endpoint};
use gobgp_api::tonic::{self, Streaming};
use tokio::task::JoinHandle;

use super::parse::{Import, RouteError, decode};
use super::path::{emit, evpn_family};
use super::route::{LocalRoute, RemoteEvent, VniExport};

/// How long a connection attempt may take: gobgpd is on this host, it answers at once or not.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest message taken from or sent to gobgpd (a RIB of a million EVPN paths fits).
const MAX_MESSAGE: usize = 1 << 30;

/// What went wrong talking to gobgpd.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to gobgpd's API at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: tonic::transport::Error,
    },
    #[error("gobgpd's {call} failed: {status}")]
    Call {
        call: &'static str,
        status: Box<tonic::Status>,
    },
}

/// A connection to gobgpd's API.
#[derive(Debug, Clone)]
pub struct Gobgp {
    api: GobgpApiClient<Channel>,
}

/// One of gobgpd's BGP sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSession {
    /// The neighbour's address.
    pub address: String,
    /// The session's state, as GoBGP names it, lower case (`established`, `active`, ...).
    pub state: String,
}

/// One routing change, or a path that could not be used (to be counted).
pub type Received = Result<RemoteEvent, RouteError>;

impl Gobgp {
    /// Connects to gobgpd's API at `addr` (`--api-hosts`, 127.0.0.1:50051 by default).
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let connect_error = |source| ClientError::Connect { addr, source };
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(connect_error)?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(connect_error)?;
        // The watch's first event holds every best path of the RIB in one message: far more
        // than tonic's default 4 MiB with a large fabric. gobgpd is a local, trusted daemon.
        Ok(Gobgp {
            api: GobgpApiClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        })
    }

    /// Advertises `route` on `export`'s VNI (again: gobgpd replaces a path with the same NLRI).
    pub async fn add(&mut self, export: &VniExport, route: &LocalRoute) -> Result<(), ClientError> {
        let request = AddPathRequest {
            table_type: TableType::Global.into(),
            path: Some(emit(export, route)),
            ..AddPathRequest::default()
        };
        self.api
            .add_path(request)
            .await
            .map_err(call_error("AddPath"))?;
        Ok(())
    }

    /// Withdraws `route` from `export`'s VNI (by its NLRI; a route not advertised is no error).
    pub async fn delete(
        &mut self,
        export: &VniExport,
        route: &LocalRoute,
    ) -> Result<(), ClientError> {
        let request = DeletePathRequest {
            table_type: TableType::Global.into(),
            family: Some(evpn_family()),
            path: Some(emit(export, route)),
            ..DeletePathRequest::default()
        };
        self.api
            .delete_path(request)
            .await
            .map_err(call_error("DeletePath"))?;
        Ok(())
    }

    /// The best path of every EVPN destination in the global RIB, ours included (the caller
    /// tells them apart by their VTEP), as advertisements.
    pub async fn list(&mut self, import: &Import) -> Result<Vec<Received>, ClientError> {
        let request = ListPathRequest {
            table_type: TableType::Global.into(),
            family: Some(evpn_family()),
            ..ListPathRequest::default()
        };
        let mut stream = self
            .api
            .list_path(request)
            .await
            .map_err(call_error("ListPath"))?
            .into_inner();
        let mut received = Vec::new();
        while let Some(reply) = stream.message().await.map_err(call_error("ListPath"))? {
            let paths = reply.destination.map(|d| d.paths).unwrap_or_default();
            received.extend(paths.iter().filter(|p| p.best).map(|p| decode(p, import)));
        }
        Ok(received)
    }

    /// gobgpd's own AS (`[global.config] as`): what automatic route targets derive from when
    /// `[evpn] asn` is omitted.
    pub async fn asn(&mut self) -> Result<u32, ClientError> {
        let reply = self
            .api
            .get_bgp(GetBgpRequest::default())
            .await
            .map_err(call_error("GetBgp"))?
            .into_inner();
        Ok(reply.global.map(|g| g.asn).unwrap_or_default())
    }

    /// gobgpd's BGP neighbours and the state of each session (`established`, `active`, ...).
    pub async fn peers(&mut self) -> Result<Vec<PeerSession>, ClientError> {
        let mut stream = self
            .api
            .list_peer(ListPeerRequest::default())
            .await
            .map_err(call_error("ListPeer"))?
            .into_inner();
        let mut peers = Vec::new();
        while let Some(reply) = stream.message().await.map_err(call_error("ListPeer"))? {
            let Some(peer) = reply.peer else { continue };
            let address = peer.conf.map(|c| c.neighbor_address).unwrap_or_default();
            let state = peer
                .state
                .and_then(|s| SessionState::try_from(s.session_state).ok())
                .unwrap_or(SessionState::Unknown);
            peers.push(PeerSession {
                address,
                state: state.as_str_name().to_ascii_lowercase(),
            });
        }
        Ok(peers)
    }

    /// Follows the best paths: first all of them (one event, [`Watch::snapshot`]), then their
    /// changes ([`Watch::next`]). gobgpd takes the snapshot and starts following in one step,
    /// so nothing falls between reading the RIB and following it (a `ListPath` then a watch
    /// could miss a change made in between).
    ///
    /// gobgpd sends the response headers of `WatchEvent` only with its first event, so the call
    /// cannot be awaited here: it is started on the runtime at once and [`Watch`] takes the
    /// stream when it comes. Call it within a tokio runtime.
    pub fn watch(&self) -> Watch {
        let request = WatchEventRequest {
            table: Some(Table {
                filters: vec![Filter {
                    r#type: Type::Best.into(),
                    init: true,
                }],
            }),
            ..WatchEventRequest::default()
        };
        let mut api = self.api.clone();
        let call = tokio::spawn(async move { api.watch_event(request).await });
        Watch {
            state: WatchState::Starting(call),
        }
    }
}

/// The stream of best paths of [`Gobgp::watch`].
#[derive(Debug)]
pub struct Watch {
    state: WatchState,
}

#[derive(Debug)]
enum WatchState {
    Starting(JoinHandle<Result<tonic::Response<Streaming<WatchEventResponse>>, tonic::Status>>),
    // Boxed: one allocation per watch, and the enum stays a pointer wide while starting.
    Streaming(Box<Streaming<WatchEventResponse>>),
}

impl Drop for Watch {
    fn drop(&mut self) {
        // A watch dropped before its first event (the session ended) takes its call along.
        if let WatchState::Starting(call) = &self.state {
            call.abort();
        }
    }
}

impl Watch {
    /// Every best path when the watch started: gobgpd's first event, sent even when the RIB
    /// is empty. Call it once, before [`Watch::next`].
    pub async fn snapshot(&mut self, import: &Import) -> Result<Vec<Received>, ClientError> {
        loop {
            match self.event(import).await? {
                Some(Some(received)) => return Ok(received),
                Some(None) => continue,
                None => {
                    return Err(ClientError::Call {
                        call: "WatchEvent",
                        status: Box::new(tonic::Status::unavailable(
                            "gobgpd ended the watch before its first event",
                        )),
                    });
                }
            }
        }
    }

    /// The paths of the next table event with any, in gobgpd's order (a move's withdrawal
    /// before the new advertisement when gobgpd sends both); `None` when gobgpd ends the
    /// stream. A path of another family is a [`RouteError::WrongFamily`].
    pub async fn next(&mut self, import: &Import) -> Result<Option<Vec<Received>>, ClientError> {
        loop {
            match self.event(import).await? {
                Some(Some(received)) if !received.is_empty() => return Ok(Some(received)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// The next event: `Some(Some(paths))` for a table event, `Some(None)` for another kind,
    /// `None` at the end of the stream.
    async fn event(
        &mut self,
        import: &Import,
    ) -> Result<Option<Option<Vec<Received>>>, ClientError> {
        if let WatchState::Starting(call) = &mut self.state {
            let response = call.await.map_err(|e| ClientError::Call {
                call: "WatchEvent",
                status: Box::new(tonic::Status::cancelled(e.to_string())),
            })?;
            let stream = response.map_err(call_error("WatchEvent"))?.into_inner();
            self.state = WatchState::Streaming(Box::new(stream));
        }
        let WatchState::Streaming(stream) = &mut self.state else {
            return Ok(None);
        };
        let Some(reply) = stream.message().await.map_err(call_error("WatchEvent"))? else {
            return Ok(None);
        };
        Ok(Some(match reply.event {
            // Paths of other families are not ours: they come back refused (counted), as
            // anything unexpected in the RIB does.
            Some(Event::Table(table)) => {
                Some(table.paths.iter().map(|p| decode(p, import)).collect())
            }
            _ => None,
        }))
    }
}

fn call_error(call: &'static str) -> impl Fn(tonic::Status) -> ClientError {
    move |status| ClientError::Call {
        call,
        status: Box::new(status),
    }
}
