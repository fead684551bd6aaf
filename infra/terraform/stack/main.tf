# The whole Litebase stack, once: every environment (envs/dev, envs/prod) calls this module
# with its own sizes and toggles (variables.tf), so the wiring between modules lives here only.

module "keys" {
  source               = "../modules/keys"
  name                 = var.name
  deletion_window_days = var.key_deletion_window_days
}

module "network" {
  source             = "../modules/network"
  name               = var.name
  availability_zones = var.availability_zones
  single_nat_gateway = var.single_nat_gateway
  kms_key_arn        = module.keys.key_arn
}

module "registry" {
  source      = "../modules/registry"
  name        = var.name
  kms_key_arn = module.keys.key_arn
  keep_images = var.keep_images
}

module "database" {
  source                   = "../modules/database"
  name                     = var.name
  subnet_ids               = module.network.private_subnet_ids
  security_group_id        = module.network.security_group_ids.database
  kms_key_arn              = module.keys.key_arn
  instance_class           = var.database.instance_class
  allocated_storage_gb     = var.database.allocated_storage_gb
  max_allocated_storage_gb = var.database.max_allocated_storage_gb
  multi_az                 = var.database.multi_az
  backup_retention_days    = var.database.backup_retention_days
  deletion_protection      = var.database.deletion_protection
}

module "cache" {
  source             = "../modules/cache"
  name               = var.name
  subnet_ids         = module.network.private_subnet_ids
  security_group_id  = module.network.security_group_ids.cache
  kms_key_arn        = module.keys.key_arn
  node_type          = var.cache.node_type
  replicas           = var.cache.replicas
  automatic_failover = var.cache.automatic_failover
}

module "edge" {
  source              = "../modules/edge"
  name                = var.name
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.public_subnet_ids
  security_group_id   = module.network.security_group_ids.alb
  certificate_arn     = var.certificate_arn
  deletion_protection = var.load_balancer_deletion_protection
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

module "files" {
  source                  = "../modules/files"
  name                    = "${var.name}-files-${data.aws_caller_identity.current.account_id}"
  kms_key_arn             = module.keys.key_arn
  noncurrent_version_days = var.files_noncurrent_version_days
  force_destroy           = var.files_force_destroy
}

module "service" {
  source                       = "../modules/service"
  name                         = var.name
  image                        = "${module.registry.repository_url}:${var.image_tag}"
  ecr_repository_arn           = module.registry.repository_arn
  kms_key_arn                  = module.keys.key_arn
  private_subnet_ids           = module.network.private_subnet_ids
  api_security_group_id        = module.network.security_group_ids.api
  worker_security_group_id     = module.network.security_group_ids.worker
  target_group_arn             = module.edge.target_group_arn
  request_count_label          = module.edge.request_count_label
  database_url                 = "postgresql://${module.database.username}@${module.database.address}:${module.database.port}/${module.database.database_name}?sslmode=require"
  database_password_secret_arn = module.database.password_secret_arn
  redis_url                    = "rediss://${module.cache.primary_endpoint}:6379/0?ssl_cert_reqs=required"
  redis_password_secret_arn    = module.cache.auth_token_secret_arn
  openai_api_key_secret_arn    = var.openai_api_key_secret_arn
  smtp_credentials_secret_arn  = var.smtp_credentials_secret_arn
  smtp_host                    = var.smtp_host
  files_bucket_arn             = module.files.bucket_arn
  environment = merge(
    {
      PUBLIC_URL   = "https://${var.domain_name}"
      APP_URL      = var.app_url
      MAIL_FROM    = var.mail_from
      CORS_ORIGINS = join(",", var.cors_origins)
      # Longer than the ALB's, so it never sends a request down a connection the API is closing.
      HTTP_KEEPALIVE_SECONDS = tostring(module.edge.idle_timeout_seconds + 5)
      # X-Forwarded-For is believed only from the ALB (inside the VPC); the client is the
      # right-most address not in this range.
      FORWARDED_ALLOW_IPS = module.network.cidr_block
      # /metrics for a scraper inside the VPC; the ALB's clients are outside it.
      METRICS_ALLOWED_NETWORKS = module.network.cidr_block
      # Files in the bucket, encrypted with the environment's key; credentials from the task role.
      FILES_STORAGE        = "s3"
      FILES_S3_BUCKET      = module.files.bucket_name
      FILES_S3_REGION      = data.aws_region.current.name
      FILES_S3_ENCRYPTION  = "aws:kms"
      FILES_S3_KMS_KEY_ID  = module.keys.key_arn
    },
    var.settings,
  )
  api_cpu                   = var.api.cpu
  api_memory                = var.api.memory
  api_count                 = var.api.count
  api_cpu_target            = var.api.cpu_target
  api_requests_per_target   = var.api.requests_per_target
  worker_cpu                = var.worker.cpu
  worker_memory             = var.worker.memory
  worker_concurrency        = var.worker.concurrency
  worker_count              = var.worker.count
  worker_queue_depth_target = var.worker.queue_depth_target
  log_retention_days        = 365
  depends_on                = [module.edge]
}
