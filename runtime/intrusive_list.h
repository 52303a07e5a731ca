// A doubly linked list threaded through its nodes' own `next` and `prev` members, so linking
// never allocates: the parking lot's waiters, the stack pool's warm stacks. No locking: the
// owner's lock guards it.
#pragma once

namespace green {

template <typename Node>
struct IntrusiveList {
    Node* head = nullptr;
    Node* tail = nullptr;

    void push_front(Node* node) {
        node->prev = nullptr;
        node->next = head;
        (head ? head->prev : tail) = node;
        head = node;
    }
    void push_back(Node* node) {
        node->next = nullptr;
        node->prev = tail;
        (tail ? tail->next : head) = node;
        tail = node;
    }
    // `node` must be on this list; its own links are left as they were.
    void remove(Node* node) {
        (node->prev ? node->prev->next : head) = node->next;
        (node->next ? node->next->prev : tail) = node->prev;
    }
};

}  // namespace green
