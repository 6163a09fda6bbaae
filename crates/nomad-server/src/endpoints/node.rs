//! Operator changes to a node (the `UpdateEligibility` and `UpdateDrain` parts of Nomad's
//! `node_endpoint.go`).

use nomad_state::Command;
use nomad_structs::*;

use crate::{now_nanos, Server, ServerError};

impl Server {
    /// `PUT /v1/node/:id/eligibility`: marks the node eligible or ineligible for new
    /// placements. What runs there keeps running. Becoming eligible again creates evals for
    /// the node's jobs and the system jobs (as a node that comes back does), and the
    /// capacity it brings unblocks blocked evals.
    pub async fn node_update_eligibility(
        &self,
        req: NodeEligibilityUpdateRequest,
    ) -> Result<NodeEligibilityUpdateResponse, ServerError> {
        if req.node_id.is_empty() {
            return Err(ServerError::BadRequest(
                "missing node ID for setting scheduling eligibility".into(),
            ));
        }
        if req.eligibility != NODE_ELIGIBLE && req.eligibility != NODE_INELIGIBLE {
            return Err(ServerError::BadRequest(format!(
                "invalid scheduling eligibility {:?}",
                req.eligibility
            )));
        }
        let snap = self.state.snapshot();
        let Some(node) = snap.node(&req.node_id) else {
            return Err(ServerError::NotFound("node not found".into()));
        };
        let now = now_nanos();
        let evals =
            if req.eligibility == NODE_ELIGIBLE && node.scheduling_eligibility == NODE_INELIGIBLE {
                self.node_evals(&snap, &req.node_id, node.modify_index, true, now)
            } else {
                vec![]
            };
        let eval_ids: Vec<String> = evals.iter().map(|e| e.id.clone()).collect();
        let index = self
            .apply(Command::NodeUpdateEligibility {
                node_id: req.node_id.clone(),
                eligibility: req.eligibility.clone(),
                evals,
                now,
            })
            .await?;
        Ok(NodeEligibilityUpdateResponse {
            eval_create_index: if eval_ids.is_empty() { 0 } else { index },
            eval_ids,
            node_modify_index: index,
            index,
        })
    }
}

/// Node event messages of a drain, as Nomad words them.
pub(crate) const DRAIN_EVENT_SET: &str = "Node drain strategy set";
pub(crate) const DRAIN_EVENT_UPDATED: &str = "Node drain strategy updated";
pub(crate) const DRAIN_EVENT_DISABLED: &str = "Node drain disabled";
pub(crate) const DRAIN_EVENT_COMPLETE: &str = "Node drain complete";

impl Server {
    /// `PUT /v1/node/:id/drain`: starts, updates or cancels a node's drain. Starting makes
    /// the node ineligible; the leader's drainer then moves its allocs off. Cancelling keeps
    /// what was already migrated where it went and, with `MarkEligible`, opens the node to
    /// placements again (with node evals, as eligibility does).
    pub async fn node_update_drain(
        &self,
        req: NodeUpdateDrainRequest,
        accessor_id: &str,
    ) -> Result<NodeDrainUpdateResponse, ServerError> {
        if req.node_id.is_empty() {
            return Err(ServerError::BadRequest(
                "missing node ID for drain update".into(),
            ));
        }
        let snap = self.state.snapshot();
        let Some(node) = snap.node(&req.node_id) else {
            return Err(ServerError::NotFound("node not found".into()));
        };
        let now = now_nanos();
        let strategy = req.drain_spec.as_ref().map(|spec| DrainStrategy {
            spec: spec.clone(),
            force_deadline: if spec.deadline > 0 {
                rfc3339_nanos(now.saturating_add(spec.deadline))
            } else {
                GO_ZERO_TIME.to_string()
            },
            started_at: match &node.drain_strategy {
                Some(running) => running.started_at.clone(),
                None => rfc3339_nanos(now),
            },
        });
        let event = match (&node.drain_strategy, &strategy) {
            (None, Some(_)) => DRAIN_EVENT_SET,
            (Some(_), Some(_)) => DRAIN_EVENT_UPDATED,
            (Some(_), None) => DRAIN_EVENT_DISABLED,
            (None, None) => "",
        };
        let becomes_eligible = strategy.is_none()
            && req.mark_eligible
            && node.scheduling_eligibility == NODE_INELIGIBLE;
        let evals = if becomes_eligible {
            self.node_evals(&snap, &req.node_id, node.modify_index, true, now)
        } else {
            vec![]
        };
        let eval_ids: Vec<String> = evals.iter().map(|e| e.id.clone()).collect();
        let index = self
            .apply(Command::NodeUpdateDrain {
                node_id: req.node_id.clone(),
                drain_strategy: strategy,
                mark_eligible: req.mark_eligible,
                drain_status: DRAIN_STATUS_CANCELED.into(),
                meta: req.meta.clone(),
                accessor_id: accessor_id.to_string(),
                event: event.to_string(),
                evals,
                now,
            })
            .await?;
        Ok(NodeDrainUpdateResponse {
            eval_create_index: if eval_ids.is_empty() { 0 } else { index },
            eval_ids,
            node_modify_index: index,
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Server, ServerConfig};

    fn node(id: &str) -> Node {
        Node {
            id: id.into(),
            name: id.into(),
            datacenter: "dc1".into(),
            status: NODE_STATUS_READY.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn eligibility_round_trip_and_refusals() {
        let server = Server::new(ServerConfig::default());
        server.node_register(node("n1")).await.unwrap();
        let set = |e: &str| NodeEligibilityUpdateRequest {
            node_id: "n1".into(),
            eligibility: e.into(),
        };
        let r = server
            .node_update_eligibility(set("ineligible"))
            .await
            .unwrap();
        assert!(r.eval_ids.is_empty());
        let n = server.state().snapshot().node("n1").unwrap();
        assert_eq!(n.scheduling_eligibility, "ineligible");
        assert_eq!(n.modify_index, r.node_modify_index);
        // A client re-registration keeps what the operator set.
        server.node_register(node("n1")).await.unwrap();
        let n = server.state().snapshot().node("n1").unwrap();
        assert_eq!(n.scheduling_eligibility, "ineligible");
        server
            .node_update_eligibility(set("eligible"))
            .await
            .unwrap();
        let n = server.state().snapshot().node("n1").unwrap();
        assert_eq!(n.scheduling_eligibility, "eligible");

        let e = server
            .node_update_eligibility(set("maybe"))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "invalid scheduling eligibility \"maybe\"");
        let mut missing = set("eligible");
        missing.node_id = "nope".into();
        let e = server.node_update_eligibility(missing).await.unwrap_err();
        assert_eq!(e.to_string(), "node not found");
        let mut empty = set("eligible");
        empty.node_id.clear();
        let e = server.node_update_eligibility(empty).await.unwrap_err();
        assert!(e.to_string().contains("missing node ID"), "{e}");
    }
}
