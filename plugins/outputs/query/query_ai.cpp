// The model-backed endpoints (query_ai.h): their threads, bodies and answers.
#include "query_ai.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>

#include "query_context.h"
#include "query_params.h"

namespace devmesh::query {

ModelRequests::ModelRequests(const dm_host_api *host, dm_instance *inst, size_t threads,
                             size_t max_waiting, Done done)
    : host_(host),
      inst_(inst),
      threads_n_(threads),
      max_waiting_(max_waiting),
      done_(std::move(done)) {}

ModelRequests::~ModelRequests() {
  stop();
  if (async_) host_->async_free(async_);
}

bool ModelRequests::start() {
  async_ = host_->async_new(inst_, on_async, this);
  if (!async_) return false;
  for (size_t i = 0; i < threads_n_; ++i) threads_.emplace_back([this] { run(); });
  return true;
}

void ModelRequests::stop() {
  size_t running = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    running = running_;
  }
  // The running ones give up at their next store query or within a second of their model
  // call (the caller set the stopping flag first): said, so a slow stop can be told apart.
  if (running)
    host_->log(inst_, DM_LOG_INFO, "stopping: abandoning %zu running model request(s)", running);
  wake_.notify_all();
  for (std::thread &t : threads_) t.join();
  threads_.clear();
  // The threads are gone: what finished is answered, what never ran is refused.
  drain();
  std::deque<Item> left;
  {
    std::lock_guard<std::mutex> l(mu_);
    left.swap(waiting_);
  }
  for (Item &it : left) {
    const std::string body = error_json("the query output is stopping");
    host_->http_reply(it.req, 503, "application/json", body.data(), body.size());
    if (done_) done_(503);
  }
}

bool ModelRequests::submit(dm_http_request *req, Work work) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ || waiting_.size() + running_ >= max_waiting_) return false;
    waiting_.push_back({req, std::move(work), 500, {}});
  }
  wake_.notify_one();
  return true;
}

void ModelRequests::run() {
  for (;;) {
    Item it;
    {
      std::unique_lock<std::mutex> l(mu_);
      wake_.wait(l, [this] { return stopping_ || !waiting_.empty(); });
      if (stopping_) return;
      it = std::move(waiting_.front());
      waiting_.pop_front();
      ++running_;
    }
    it.work(it.status, it.body);
    {
      std::lock_guard<std::mutex> l(mu_);
      --running_;
      finished_.push_back(std::move(it));
    }
    host_->async_send(async_);
  }
}

void ModelRequests::on_async(void *arg) {
  static_cast<ModelRequests *>(arg)->drain();
}

void ModelRequests::drain() {
  std::deque<Item> done;
  {
    std::lock_guard<std::mutex> l(mu_);
    done.swap(finished_);
  }
  for (Item &it : done) {
    host_->http_add_header(it.req, "Cache-Control", "no-store");
    host_->http_reply(it.req, it.status, "application/json", it.body.data(), it.body.size());
    if (done_) done_(it.status);
  }
}

namespace {

int status_of(ModelOutcome o) {
  return o == ModelOutcome::kTimeout ? 504 : o == ModelOutcome::kStopped ? 503 : 502;
}

std::string model_error(const char *what, ModelOutcome o, const std::string &why) {
  return object_json({{"error", std::string(what) + ": " + why}, {"reason", outcome_name(o)}});
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

}  // namespace

void search_semantic(const ModelClient &client, ModelMetrics &metrics, const Embedder &embedder,
                     const SemanticRequest &req,
                     const std::function<std::shared_ptr<const TemplateIndex>()> &stored,
                     int &status, std::string &body) {
  std::vector<std::vector<float>> v;
  std::string why;
  const ModelOutcome o = client.embed({req.message}, v, why);
  metrics.count("embeddings", o);
  if (o != ModelOutcome::kOk) {
    status = status_of(o);
    body = model_error("the embedding model failed", o, why);
    return;
  }
  const std::shared_ptr<const TemplateIndex> list = stored ? stored() : nullptr;
  std::function<bool(uint64_t)> keep;
  if (list && list->complete()) keep = [&list](uint64_t id) { return list->has(id); };
  rapidjson::StringBuffer buf;
  Writer w(buf);
  std::string scratch;
  w.StartObject();
  w.Key("model");
  const ModelSettings &s = client.settings();
  write_string(w, s.model, scratch);
  w.Key("templates");
  w.Uint64(embedder.vectors());
  w.Key("patterns");
  w.StartArray();
  for (const Embedder::Near &n : embedder.nearest(v[0], req.service, req.limit, keep)) {
    w.StartObject();
    w.Key("pattern_id");
    write_string(w, pattern_id_hex(n.id), scratch);
    w.Key("service");
    write_string(w, n.service, scratch);
    w.Key("template");
    write_string(w, n.template_text, scratch);
    w.Key("score");
    w.Double(std::round(n.score * 10000) / 10000);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  status = 200;
  body.assign(buf.GetString(), buf.GetSize());
}

const char *const kExplainSystemPrompt =
    "You are an experienced site reliability engineer. The user message is an incident pack "
    "from a log store: the error and warning log patterns of a time window, ranked by how "
    "unusual they are against the window before, with the services and hosts affected, first "
    "and last occurrences, and sample lines. Explain what most likely happened: the probable "
    "cause, the sequence of events, the impact, and the next checks to make. Cite the patterns "
    "and sample lines you rely on. Say so when the evidence is not enough; do not invent facts "
    "that are not in the pack.";

void explain_incident(QueryStore &store, const ModelClient &client, ModelMetrics &metrics,
                      const ExplainRequest &req, TimeFormat tf, const std::atomic<bool> &stopping,
                      int &status, std::string &body) {
  ContextQuery q = req.query;
  q.stopping = &stopping;
  std::string pack;
  StoreError err;
  if (!build_context_text(store, q, tf, pack, err)) {
    status = err.status == StoreStatus::kTimeout        ? 504
             : err.status == StoreStatus::kUnavailable  ? 503
             : err.status == StoreStatus::kBadParameter ? 400
                                                        : 500;
    body = error_json(err.message);
    return;
  }
  std::string answer, why;
  const ModelOutcome o = client.chat(kExplainSystemPrompt, pack, answer, why);
  metrics.count("chat", o);
  if (o != ModelOutcome::kOk) {
    status = status_of(o);
    body = model_error("the chat model failed", o, why);
    return;
  }
  rapidjson::StringBuffer buf;
  Writer w(buf);
  std::string scratch;
  w.StartObject();
  w.Key("answer");
  write_string(w, answer, scratch);
  w.Key("model");
  write_string(w, client.settings().model, scratch);
  w.Key("start_time");
  write_string(w, format_time(q.start_ns, tf), scratch);
  w.Key("end_time");
  write_string(w, format_time(q.end_ns, tf), scratch);
  w.Key("evidence");
  write_string(w, pack, scratch);
  w.EndObject();
  status = 200;
  body.assign(buf.GetString(), buf.GetSize());
}

}  // namespace devmesh::query
