//! The token API and the admin event log from the client side
//! (`warden token ...`, `warden admin-events`, `warden verify --url`).

use http::Method;

use super::{ApiClient, ClientError, encode_segment};
use crate::access::{
    AdminEventInfo, AdminEventList, CreateToken, TokenCreated, TokenInfo, TokenList,
};

impl ApiClient {
    /// Creates a named token; the answer holds it (shown once).
    pub async fn create_token(&self, request: &CreateToken) -> Result<TokenCreated, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Encode(Box::new(e)))?;
        self.call(Method::POST, "/api/v1/tokens", Some(body)).await
    }

    /// Live named tokens, by name.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        let list: TokenList = self.call(Method::GET, "/api/v1/tokens", None).await?;
        Ok(list.tokens)
    }

    /// Revokes the named token: it stops working at once.
    pub async fn revoke_token(&self, name: &str) -> Result<TokenInfo, ClientError> {
        let path = format!("/api/v1/tokens/{}", encode_segment(name));
        self.call(Method::DELETE, &path, None).await
    }

    /// A page of admin events after `after` (0: from the first), oldest
    /// first.
    pub async fn admin_events(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AdminEventInfo>, ClientError> {
        let path = format!("/api/v1/admin-events?after={after}&limit={limit}");
        let list: AdminEventList = self.call(Method::GET, &path, None).await?;
        Ok(list.events)
    }

    /// `GET path` (with its query), the JSON answer read as `T`: for the
    /// routes whose bodies are another crate's (the chain's links and
    /// records, checkpoints).
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }
}
