//! [`FleetTable`] on DynamoDB: partition key `service` (S), sort key `task` (S), a heartbeat
//! counter `beat` (N) and a TTL attribute `expires` (N, epoch seconds, garbage collection only).
//! Members are read with a strongly consistent query of the partition; writes are plain puts
//! (each task writes only its own item, so no condition is needed). A missing table is created
//! on demand (`PAY_PER_REQUEST`) with TTL on `expires`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use super::{FleetTable, Member, TableError};

pub struct DynamoTable {
    client: Client,
    table: String,
}

fn fail(what: &str, e: impl std::error::Error) -> TableError {
    TableError(format!("{what}: {}", DisplayErrorContext(e)))
}

impl DynamoTable {
    /// `endpoint_url`: `AWS_ENDPOINT_URL_DYNAMODB` (or `AWS_ENDPOINT_URL`), for moto or
    /// DynamoDB Local.
    pub fn new(sdk: &aws_config::SdkConfig, table: &str, endpoint_url: Option<&str>) -> Self {
        let mut b = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(url) = endpoint_url {
            b = b.endpoint_url(url);
        }
        DynamoTable {
            client: Client::from_conf(b.build()),
            table: table.to_string(),
        }
    }

    async fn create(&self) -> Result<(), TableError> {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| fail("key schema", e))
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| fail("attribute", e))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("service", KeyType::Hash)?)
            .key_schema(key("task", KeyType::Range)?)
            .attribute_definitions(attr("service")?)
            .attribute_definitions(attr("task")?)
            .send()
            .await;
        match created {
            Ok(_) => tracing::info!(table = %self.table, "created the fleet table"),
            // Another task created it first.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(e) => return Err(fail("create_table", e)),
        }
        for _ in 0..60 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| fail("describe_table", e))?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name("expires")
            .enabled(true)
            .build()
            .map_err(|e| fail("ttl", e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| fail("update_time_to_live", e))?;
        Ok(())
    }
}

#[async_trait]
impl FleetTable for DynamoTable {
    async fn ensure(&self) -> Result<(), TableError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                self.create().await
            }
            Err(e) => Err(fail("describe_table", e)),
        }
    }

    async fn heartbeat(
        &self,
        service: &str,
        task: &str,
        beat: u64,
        expires: u64,
    ) -> Result<(), TableError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("service", AttributeValue::S(service.into()))
            .item("task", AttributeValue::S(task.into()))
            .item("beat", AttributeValue::N(beat.to_string()))
            .item("expires", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(|e| fail("put_item", e))?;
        Ok(())
    }

    async fn members(&self, service: &str) -> Result<Vec<Member>, TableError> {
        let mut members = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#s = :s")
                .expression_attribute_names("#s", "service")
                .expression_attribute_values(":s", AttributeValue::S(service.into()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| fail("query", e))?;
            for item in page.items() {
                let task = item.get("task").and_then(|v| v.as_s().ok());
                let beat = item
                    .get("beat")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok());
                // An item this worker did not write: skip it rather than guess.
                if let (Some(task), Some(beat)) = (task, beat) {
                    members.push(Member {
                        task: task.clone(),
                        beat,
                    });
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(members),
            }
        }
    }

    async fn leave(&self, service: &str, task: &str) -> Result<(), TableError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("service", AttributeValue::S(service.into()))
            .key("task", AttributeValue::S(task.into()))
            .send()
            .await
            .map_err(|e| fail("delete_item", e))?;
        Ok(())
    }
}
